"""A CTR checkpoint from the command line: ``recpipe evaluate`` (its metrics on the valid or test examples, as
training computed them) and ``recpipe score`` (p(like) of new (history, candidate) rows from a JSON-lines file).

A row to score is one JSON object per line::

    {"user_id": "u1", "history_titles": ["Toy Story (1995)", "Heat (1995)"], "history_liked": [true, false],
     "candidate_title": "Casino (1995)", "candidate_text": "Title: Casino (1995). Genres: Drama.",
     "item_id": "16", "label": 1}

``history_titles``, ``history_liked`` and ``candidate_title`` are required (most recent history item last);
``candidate_text`` defaults to the title; ``item_id`` names the candidate for a checkpoint trained with
``item_feature`` (unknown items get the overall like rate); with ``label`` on every row the metrics are printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from recpipe.ctr.collators import CrossEncoderCollator, PromptCollator
from recpipe.ctr.config import CTRDataArguments
from recpipe.ctr.features import ITEM_FEATURE, item_like_logodds
from recpipe.ctr.modeling import load_ctr_checkpoint
from recpipe.errors import InvalidInputError, MissingInputError
from recpipe.metrics import pointwise_metrics

REQUIRED = ("history_titles", "history_liked", "candidate_title")


def eval_collator(model, tokenizer, data_args: CTRDataArguments):
    """The collator training evaluated with (no masking, no LM targets)."""
    if model.model_config.model_family == "encoder":
        return CrossEncoderCollator(tokenizer, data_args.max_length)
    return PromptCollator(tokenizer, data_args.item_noun, data_args.max_length)


@torch.no_grad()
def predict_probs(model, rows, collator, batch_size: int = 64, bf16: bool = False) -> np.ndarray:
    """p(like) of every row, in order, as ``CTRTrainer.predict_probs`` computes it (one process)."""
    model.eval()
    probs = []
    for batch in DataLoader(rows, batch_size=batch_size, collate_fn=collator):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**inputs)["logits"]
        probs.append(torch.sigmoid(logits.float()))
    return torch.cat(probs).numpy()


def _training_args(checkpoint: Path) -> dict:
    path = checkpoint / "training_args.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def evaluate_ctr_checkpoint(checkpoint, split: str = "test", output=None) -> tuple[dict, Path]:
    """Metrics of a CTR checkpoint on the valid or test examples of the data it was trained on, rebuilt from the
    same source with the same settings (the same subset when ``max_eval_examples``/``max_test_examples`` cut it)."""
    from recpipe.ctr.pipeline import ctr_data, fixed_subset

    checkpoint = Path(checkpoint)
    model, tokenizer, config = load_ctr_checkpoint(checkpoint)
    train_cfg = _training_args(checkpoint)
    data_args = CTRDataArguments(**config["data_args"])
    dd, _ = ctr_data(data_args)
    cut = data_args.max_test_examples if split == "test" else data_args.max_eval_examples
    rows = fixed_subset(dd[split], cut, train_cfg.get("seed", 42))
    if ITEM_FEATURE in model.model_config.wide_features:
        rows = rows.add_column(ITEM_FEATURE, item_like_logodds(rows, config["item_like_table"]))
    probs = predict_probs(
        model,
        rows,
        eval_collator(model, tokenizer, data_args),
        train_cfg.get("per_device_eval_batch_size", 64),
        bf16=bool(train_cfg.get("bf16")) and not torch.cuda.is_available(),
    )
    metrics = pointwise_metrics(np.asarray(rows["label"]), probs, list(rows["user_id"]), prefix=f"{split}_")
    metrics[f"{split}_examples"] = float(len(rows))
    metrics[f"{split}_positive_rate"] = float(np.mean(rows["label"]))
    out = Path(output or checkpoint / f"eval_{split}_results.json")
    out.write_text(json.dumps(metrics, indent=2))
    return metrics, out


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file, checked: a missing field or a wrong type is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{path}, line {line_no}: invalid JSON ({e.msg})") from None
        missing = [k for k in REQUIRED if k not in row] if isinstance(row, dict) else list(REQUIRED)
        if missing:
            raise InvalidInputError(f"{path}, line {line_no}: a row needs {list(REQUIRED)}; missing {missing}")
        titles, liked = row["history_titles"], row["history_liked"]
        if not isinstance(titles, list) or not isinstance(liked, list) or len(titles) != len(liked):
            raise InvalidInputError(
                f"{path}, line {line_no}: history_titles and history_liked must be lists of the same length"
            )
        row.setdefault("candidate_text", row["candidate_title"])
        row.setdefault("user_id", f"row{line_no}")
        row["history_liked"] = [bool(v) for v in liked]
        rows.append(row)
    if not rows:
        raise InvalidInputError(f"{path}: no rows to score")
    return rows


def score_file(checkpoint, rows: list[dict], output, batch_size: int = 64) -> tuple[Path, dict]:
    """Write ``rows`` with ``p_like`` added to ``output`` (JSON lines); the metrics too when every row has a
    ``label``."""
    model, tokenizer, config = load_ctr_checkpoint(checkpoint)
    data_args = CTRDataArguments(**config["data_args"])
    if ITEM_FEATURE in model.model_config.wide_features:
        values = item_like_logodds({"item_id": [str(r.get("item_id", "")) for r in rows]}, config["item_like_table"])
        rows = [{**r, ITEM_FEATURE: v} for r, v in zip(rows, values)]
    bf16 = bool(_training_args(Path(checkpoint)).get("bf16")) and not torch.cuda.is_available()
    features = [{**r, "label": r.get("label", 0)} for r in rows]
    probs = predict_probs(model, features, eval_collator(model, tokenizer, data_args), batch_size, bf16)
    out = Path(output)
    with open(out, "w") as f:
        for row, p in zip(rows, probs):
            kept = {k: v for k, v in row.items() if k != ITEM_FEATURE}
            f.write(json.dumps({**kept, "p_like": float(p)}) + "\n")
    metrics = {}
    if all("label" in r for r in rows):
        metrics = pointwise_metrics(np.asarray([int(r["label"]) for r in rows]), probs, [r["user_id"] for r in rows])
    return out, metrics
