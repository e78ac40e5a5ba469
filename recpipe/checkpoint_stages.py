"""The checkpoint stages: the entries of ``stages`` that work on a saved checkpoint, ``evaluate``, ``export`` and
``robustness`` (the training stages, ``pretrain`` and ``finetune``, are in :mod:`recpipe.pipeline`).

``recpipe evaluate|export|robustness`` call them, and so does a recipe whose ``stages`` list them after (or without)
``finetune`` — on ``output_dir``, so a stage can run in the same launch as training or later on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recpipe.collators import tokenize_items
from recpipe.data import load_prepared
from recpipe.errors import InvalidInputError
from recpipe.evaluation import evaluate_split, item_popularity, item_vectors, user_vectors
from recpipe.inference_files import known_users, write_inference_files
from recpipe.modeling import load_checkpoint
from recpipe.recommender import resolve_prepared_dir
from recpipe.robustness import log_to_wandb, robustness_report, write_robustness


def load_for_evaluation(checkpoint, prepared_dir=None):
    """(model, tokenizer, checkpoint config, prepared DatasetDict, tokenized item text, training arguments)."""
    model, tokenizer, config = load_checkpoint(checkpoint)
    dd, _ = load_prepared(resolve_prepared_dir(config, Path(checkpoint), prepared_dir))
    texts = list(dd["items"]["text"])
    tokens = tokenize_items(texts, tokenizer, model.model_config.max_text_length) if tokenizer else None
    args_path = Path(checkpoint) / "training_args.json"
    train_cfg = json.loads(args_path.read_text()) if args_path.is_file() else {}
    return model, tokenizer, config, dd, tokens, train_cfg


def evaluate_checkpoint(checkpoint, split: str = "test", prepared_dir=None, output=None) -> tuple[dict, Path]:
    """Full-ranking metrics of a checkpoint on a split, with the protocol it was trained under; written as JSON."""
    model, _, _, dd, tokens, train_cfg = load_for_evaluation(checkpoint, prepared_dir)
    if split not in dd:
        raise InvalidInputError(f"the prepared data has no {split!r} split; it has {sorted(dd)}")
    metrics = evaluate_split(
        model,
        dd[split],
        tokens,
        ks=train_cfg.get("eval_ks", [5, 10, 20]),
        exclude_history=train_cfg.get("exclude_history", True),
        batch_size=train_cfg.get("per_device_eval_batch_size", 256),
        prefix=f"{split}_",
        item_popularity=item_popularity(dd["train"], len(dd["items"])),
    )
    metrics[f"{split}_exclude_history"] = float(train_cfg.get("exclude_history", True))
    out = Path(output or Path(checkpoint) / f"eval_{split}_results.json")
    out.write_text(json.dumps(metrics, indent=2))
    return metrics, out


def export_embeddings(checkpoint, output_dir=None, prepared_dir=None) -> Path:
    """Item and known-user embeddings as Parquet and NumPy (a user = the state after their whole known sequence),
    and beside the checkpoint what serving needs (catalogue, known users, item vectors, FAISS index:
    ``recpipe.inference_files``), so that ``recommend`` and ``serve`` start without re-encoding the catalogue."""
    model, _, _, dd, tokens, _ = load_for_evaluation(checkpoint, prepared_dir)
    out = Path(output_dir or Path(checkpoint) / "embeddings")
    out.mkdir(parents=True, exist_ok=True)
    table = item_vectors(model, tokens, progress=True)
    items_cols = {k: list(dd["items"][k]) for k in ("item_id", "title", "text")}
    written = write_inference_files(checkpoint, items_cols, known_users(dd["test"], model.max_history), table)
    items = table[1:].float().numpy()
    np.save(out / "item_embeddings.npy", items)
    pd.DataFrame(
        {"item_id": list(dd["items"]["item_id"]), "title": list(dd["items"]["title"]), "embedding": list(items)}
    ).to_parquet(out / "item_embeddings.parquet")
    test = dd["test"]
    full = test.map(lambda r: {"history": (r["history"] + [r["target"]])[-model.max_history :]})
    users, _, rows = user_vectors(model, table, full)
    users = users[rows.argsort()].numpy()
    np.save(out / "user_embeddings.npy", users)
    pd.DataFrame({"user_id": list(test["user_id"]), "embedding": list(users)}).to_parquet(
        out / "user_embeddings.parquet"
    )
    print(f"{len(items):,} item and {len(users):,} user embeddings (dim {items.shape[1]}) written to {out}")
    print(f"catalogue, item vectors and FAISS index for serving: {', '.join(str(p) for p in written)}")
    return out


def robustness_of_checkpoint(checkpoint, config, output_dir=None, prepared_dir=None) -> tuple[list[dict], list[Path]]:
    """The robustness report of a checkpoint (``recpipe.robustness``), written beside it (or to ``output_dir``) and
    logged to the active W&B run, if any."""
    model, tokenizer, _, dd, _, train_cfg = load_for_evaluation(checkpoint, prepared_dir)
    rows = robustness_report(
        model,
        dd,
        tokenizer,
        config,
        max_text_length=model.model_config.max_text_length,
        ks=train_cfg.get("eval_ks", [5, 10, 20]),
        exclude_history=train_cfg.get("exclude_history", True),
        batch_size=train_cfg.get("per_device_eval_batch_size", 256),
        temperature=train_cfg.get("temperature", 1.0),
    )
    paths = write_robustness(rows, output_dir or checkpoint, config, {"checkpoint": str(checkpoint)})
    log_to_wandb(rows)
    return rows, paths
