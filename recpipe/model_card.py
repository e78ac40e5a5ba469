"""The checkpoint's README: what data, which configuration, which metrics — written beside the weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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
        f"""# recpipe checkpoint

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

Load it with `recpipe.Recommender.from_pretrained("{output_dir}")` or evaluate it with
`recpipe evaluate --checkpoint {output_dir}`.
"""
    )
    return path
