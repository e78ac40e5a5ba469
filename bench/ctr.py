"""Pointwise preference (CTR) benchmark on MovieLens-100K under the TALLRec protocol: AUC of the encoder
cross-encoder and the causal LM at 16 / 64 / 256 shots and with all training data, seeds, beside the baselines.

Each (variant, shots, seed) runs ``recipes/ctr.py`` in its own process and saves its test metrics to
``bench/results/ctr/<variant>/<shots>/seed<k>.json``; the baselines (same test examples) go to
``bench/results/ctr/baselines/<shots>/seed<k>.json``. Finished runs are skipped, so it resumes where it stopped.
Every model and baseline is scored on the same fixed random subset of the test split (``--max-test-examples``).

    python bench/ctr.py --variants encoder encoder+history --shots 16 64 256 --seeds 0 1 2
    python bench/ctr.py --baselines-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ctr"
# the training budget of each family: optimizer steps by training-set size (few-shot runs see each example many
# times; the best valid AUC is kept), the few-shot batch size, and how many valid examples are scored how often.
# The causal LM (SmolLM2-135M, bf16 autocast) costs ~0.5 s a training example and ~0.2 s a scored one on 2 CPU
# cores, several times the encoder: its few-shot runs see each example 10 / 5 / 2 times and are validated once, at
# the end, on 200 examples (a 16-shot run is ~6 min with its 1,000 test examples). The encoder's all-data budget
# is 300 steps of 32 (9,600 examples): a 1,000-step run of encoder+wide-ordered (the earlier item rate) was flat
# from step 250 on (valid AUC 77.1 / 77.3 / 77.2 / 77.3 at steps 250-1,000); 300 steps make three seeds fit.
BUDGETS = {
    "encoder": {"steps": {"16": 40, "64": 60, "256": 120, "all": 300}, "batch": 16, "evals": 4, "eval_examples": 500},
    "causal_lm": {"steps": {"16": 20, "64": 40, "256": 64, "all": 250}, "batch": 8, "evals": 1, "eval_examples": 200},
}
SHOTS = ["16", "64", "256", "all"]
# model variants: the recipe of a family plus overrides; "+history" adds the like-rate term (``history_feature``),
# "+wide" adds the candidate's training like rate to it (``item_feature``)
VARIANTS = {
    "encoder": ("encoder", {}),
    "encoder+history": ("encoder", {"history_feature": "true"}),
    # the like-rate term on the model's learning rate (how the first runs went, before wide_learning_rate)
    "encoder+history-shared-lr": ("encoder", {"history_feature": "true", "wide_learning_rate": "1e-3"}),
    "encoder+wide": ("encoder", {"history_feature": "true", "item_feature": "true"}),
    "causal_lm": ("causal_lm", {}),
    "causal_lm+history": ("causal_lm", {"history_feature": "true"}),
    "causal_lm+wide": ("causal_lm", {"history_feature": "true", "item_feature": "true"}),
}


def run_baselines(shots: str, seed: int, max_test: int) -> dict:
    from recpipe.ctr.baselines import ctr_baselines
    from recpipe.ctr.config import CTRDataArguments
    from recpipe.ctr.pipeline import ctr_data, fixed_subset

    data_args = CTRDataArguments(train_shots=None if shots == "all" else int(shots), shot_seed=seed)
    dd, _ = ctr_data(data_args)
    return ctr_baselines(dd["train"], fixed_subset(dd["test"], max_test, seed))


def run_model(variant: str, shots: str, seed: int, max_test: int) -> dict:
    family, overrides = VARIANTS[variant]
    out = ROOT / "bench" / "runs" / "ctr" / variant / shots / f"seed{seed}"
    budget = BUDGETS[family]
    steps = budget["steps"][shots]
    every = max(10, steps // budget["evals"])
    cmd = [
        sys.executable,
        str(ROOT / "recipes" / "ctr.py"),
        "--config",
        str(ROOT / "recipes" / "ctr" / f"config_{family}.yaml"),
    ]
    flags = {
        "seed": seed,
        "shot_seed": seed,
        "output_dir": out,
        "resume": "false",
        "max_steps": steps,
        "eval_steps": every,
        "save_steps": every,
        "max_eval_examples": budget["eval_examples"],
        "max_test_examples": max_test,
        "disable_tqdm": "true",
        "save_total_limit": 1,
        **overrides,
    }
    if shots != "all":
        flags["train_shots"] = shots
        flags["per_device_train_batch_size"] = budget["batch"]
    for key, value in flags.items():
        cmd += [f"--{key}", str(value)]
    log = out.parent / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} {shots} shots seed {seed} failed; see {log}")
    metrics = json.loads((out / "test_results.json").read_text())
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    metrics["command"] = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--shots", nargs="+", default=SHOTS, choices=SHOTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-test-examples", type=int, default=1000)
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    for shots in args.shots:
        for seed in args.seeds:
            path = RESULTS / "baselines" / shots / f"seed{seed}.json"
            if args.force or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(run_baselines(shots, seed, args.max_test_examples), indent=2))
            print(f"baselines {shots} shots seed {seed}: {path.relative_to(ROOT)}", flush=True)
    if args.baselines_only:
        return
    for variant in args.variants:
        for shots in args.shots:
            for seed in args.seeds:
                path = RESULTS / variant / shots / f"seed{seed}.json"
                if path.exists() and not args.force:
                    print(f"{variant} {shots} shots seed {seed}: done", flush=True)
                    continue
                metrics = run_model(variant, shots, seed, args.max_test_examples)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(metrics, indent=2))
                print(f"{variant} {shots} shots seed {seed}: test AUC {metrics['test_auc']:.4f}", flush=True)


if __name__ == "__main__":
    main()
