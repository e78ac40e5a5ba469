"""The checkpoint's README: what data, which configuration, which metrics — written beside the weights, with the
Hugging Face Hub's metadata block (library, base model, tags, datasets, metrics) so that a pushed checkpoint is
found and filtered on the Hub like any model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from recpipe.backbone import PACKAGED_MINILM

# hub ids of the packaged models, for the card's base_model
HUB_IDS = {PACKAGED_MINILM: "sentence-transformers/all-MiniLM-L6-v2"}


def card_metadata(data_args, model_args) -> str:
    """The YAML front matter of the card (Hugging Face model card metadata)."""
    from huggingface_hub import ModelCardData

    base = HUB_IDS.get(model_args.model_name_or_path, model_args.model_name_or_path)
    tags = ["recpipe", "recommendation", "sequential-recommendation", "retrieval", data_args.dataset]
    if model_args.peft_type != "none":
        tags += ["peft", model_args.peft_type]
    data = ModelCardData(
        library_name="recpipe",
        base_model=base if "/" in base and not Path(base).exists() else None,  # hub ids only, not local folders
        tags=tags,
        datasets=[data_args.dataset],
        metrics=["ndcg", "recall", "mrr"],
        license="apache-2.0",
    )
    return f"---\n{data.to_yaml()}\n---\n"


# Figures measured on the same split under the same protocol (the repository's BENCHMARKS.md), for context.
REFERENCE_FIGURES = {
    "movielens-100k": "For comparison on the same split and protocol (BENCHMARKS.md): a standard SASRec "
    "(RecBole 1.2.1) scores test NDCG@10 0.1081, BERT4Rec 0.1005, BPR 0.0594, popularity 0.0432.",
}


def write_model_card(output_dir, data_args, model_args, training_args, stats: dict, metrics: dict | None) -> Path:
    path = Path(output_dir) / "README.md"
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted((metrics or {}).items()) if isinstance(v, float))
    filt = stats["filtered"]
    keys = (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "seed",
        "stages",
        "rec_weight",
        "mlm_weight",
        "rel_weight",
        "temperature",
        "negatives",
        "exclude_history",
    )
    train_cfg = {k: getattr(training_args, k) for k in keys}
    path.write_text(
        card_metadata(data_args, model_args)
        + f"""# recpipe checkpoint

Sequential recommender trained with recpipe on **{data_args.dataset}**: item tower `{model_args.model_name_or_path}`
(text: {model_args.use_text}, item IDs: {model_args.use_item_ids}, adapter: {model_args.peft_type}), causal user tower.

## Data
{filt["users"]:,} users, {filt["items"]:,} items, {filt["interactions"]:,} interactions after filtering
({stats["raw"]["interactions"]:,} raw); split `{stats["config"]["split"]}`; tie-break: {stats["tie_break"]}.

## Test metrics
Full ranking over the whole catalogue, ties pessimistic, known items excluded: {training_args.exclude_history}.
{REFERENCE_FIGURES.get(data_args.dataset, "")}

| metric | value |
| --- | --- |
{rows}

## Configuration
```json
{json.dumps({"model": dataclasses.asdict(model_args), "training": train_cfg}, indent=2, default=str)}
```

## Use it
The folder holds everything inference needs (weights of what training changed, model and tokenizer config,
the catalogue, item vectors and their FAISS index), so it works from any working directory, or from the Hub once
pushed (`recpipe push-to-hub --checkpoint {output_dir} --repo_id OWNER/NAME`):

```python
from recpipe import Recommender

rec = Recommender.from_pretrained("{output_dir}")  # or a hub id, "OWNER/NAME"
rec.recommend(history=[...], k=10, explain=True)   # item ids or titles, oldest first
```

```bash
recpipe recommend --checkpoint {output_dir} --history ITEM [ITEM ...]
recpipe serve --checkpoint {output_dir}          # HTTP JSON API on http://127.0.0.1:8000
recpipe evaluate --checkpoint {output_dir}       # needs the prepared dataset it was trained on
```

The text encoder (`{model_args.model_name_or_path}`) is loaded only to add new items by their text.
"""
    )
    return path
