"""Backbone ablations: what each difference between recpipe's ID-only model and a standard SASRec costs.

Every ablation is the ``sasrec-id`` variant of ``bench/quality.py`` (the MovieLens recipe, ID-only) plus the
overrides below, one process per (ablation, seed); results go to
``bench/results/backbone/<dataset>/<name>/seed<k>.json``; finished runs are skipped (the benchmark resumes).

    python bench/backbone.py --ablations base prefix --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402

RESULTS = quality.ROOT / "bench" / "results" / "backbone"

# The peer (RecBole 1.2.1 SASRec defaults): hidden 64, inner 256, dropout 0.5, no weight decay, constant lr 1e-3,
# batch 256, one example per prefix. Each ablation moves one setting (or a named group) towards it.
ABLATIONS: dict[str, dict[str, str]] = {
    "base": {},
    "hidden64": {"hidden_size": "64"},
    "dropout0.5": {"user_dropout": "0.5"},
    "constant-lr": {"lr_scheduler_type": "constant", "warmup_steps": "0"},
    "wd0": {"weight_decay": "0"},
    "ffn4x": {"user_ffn_size": "512"},
    "steps5000": {"max_steps": "5000"},
    "steps5000-dropout0.5": {"max_steps": "5000", "user_dropout": "0.5"},
    "stride10": {"window_stride": "10"},
    "stride10-b256": {"window_stride": "10", "per_device_train_batch_size": "256"},
    "prefix-b256": {"window_stride": "1", "per_device_train_batch_size": "256"},
    "peer": {
        "hidden_size": "64",
        "user_ffn_size": "256",
        "user_dropout": "0.5",
        "weight_decay": "0",
        "lr_scheduler_type": "constant",
        "warmup_steps": "0",
        "window_stride": "1",
        "per_device_train_batch_size": "256",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k", choices=["movielens-100k", "movielens-1m"])
    parser.add_argument("--ablations", nargs="*", default=list(ABLATIONS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--base", default="sasrec-id", help="the quality.py variant the ablations start from")
    parser.add_argument("--force", action="store_true", help="run again even if results exist")
    args, extra = parser.parse_known_args()
    quality.ensure_prepared(args.dataset, quality.ROOT / "data" / "prepared" / args.dataset)
    for name in args.ablations:
        tag = f"{args.base}+{name}"
        quality.VARIANTS[tag] = {**quality.VARIANTS[args.base], **ABLATIONS[name]}
        for seed in args.seeds:
            path = RESULTS / args.dataset / tag / f"seed{seed}.json"
            if path.exists() and not args.force:
                print(f"{tag} seed {seed}: done ({path.relative_to(quality.ROOT)})")
                continue
            metrics = quality.run_variant(tag, args.dataset, seed, extra)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metrics, indent=2))
            ndcg, wall = metrics["test_ndcg@10"], metrics["wall_s"]
            print(f"{tag} seed {seed}: test ndcg@10 {ndcg:.4f} ({wall:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
