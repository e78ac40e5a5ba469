"""Quality benchmark: baselines and recpipe variants on MovieLens, leave-one-out, full ranking, seeds.

Each (variant, seed) runs the MovieLens recipe in its own process and saves its test metrics to
``bench/results/quality/<dataset>/<variant>/seed<k>.json``; finished runs are skipped, so the benchmark resumes where
it stopped. ``bench/report.py`` turns the results into the tables of BENCHMARKS.md.

    python bench/quality.py --dataset movielens-100k --variants sasrec-id text+id-lora --seeds 0 1 2
    python bench/quality.py --mode quick        # the variants and seeds that fit in minutes
    python bench/quality.py --cold --variants sasrec-id text-frozen text+id-frozen   # the cold-start protocol
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quality"
BASE_RECIPE = ROOT / "recipes" / "movielens" / "config_lora.yaml"

# The recipe (= make train) trains in two phases; the single-phase variants switch that off.
ONE_PHASE = {"frozen_encoder_steps": "0"}
# The recipe's MLM part until the 3-seed ablation turned it off: pinned, so that the variants measured with it keep
# their meaning
MLM = {"mlm_weight": "0.1"}
# LoRA from the first step, 600 steps: the make-train recipe before the two-phase schedule
LORA_600 = {**ONE_PHASE, **MLM, "max_steps": "600"}
ID_ONLY = {
    **ONE_PHASE,
    "use_text": "false",
    "use_item_ids": "true",
    "peft_type": "none",
    "mlm_weight": "0",
    "max_fresh_items": "0",
    "max_steps": "3000",
}
FROZEN = {**ONE_PHASE, "freeze_encoder": "true", "mlm_weight": "0", "max_fresh_items": "0", "max_steps": "2000"}
# Every variant is the recipe plus these overrides (flags of recipes/movielens.py).
VARIANTS: dict[str, dict[str, str]] = {
    "sasrec-id": {**ID_ONLY},
    # ML-1M: the same SASRec for 4,000 steps, matched with text+id-frozen-long
    "sasrec-id-long": {**ID_ONLY, "max_steps": "4000", "eval_steps": "500", "save_steps": "500"},
    "text-lora": {**LORA_600, "use_item_ids": "false"},
    "text-lora-mlm0": {**LORA_600, "use_item_ids": "false", "mlm_weight": "0"},
    "text-lora-pretrain": {**LORA_600, "use_item_ids": "false", "stages": "pretrain finetune", "rel_weight": "0.1"},
    "text+id-lora": {**LORA_600},
    "text+id-lora-mlm0": {**LORA_600, "mlm_weight": "0"},
    "text+id-lora-pretrain": {**LORA_600, "stages": "pretrain finetune", "rel_weight": "0.1"},
    "text+id-lora-fgm": {**LORA_600, "adversarial": "fgm", "adv_epsilon": "0.2"},
    # two phases: 2,000 cheap steps on the cached text vectors (towers + IDs), then 400 with LoRA + MLM on a copy
    "text+id-lora-2phase": {**MLM},
    # the same before mlm_on_copy: item vectors of the LoRA phase from the masked text of the MLM part
    "text+id-lora-2phase-masked": {**MLM, "mlm_on_copy": "false"},
    # issue 15's schedules around it; the first two measured beside -masked, with its vectors
    # a longer LoRA phase (800 steps)
    "text+id-lora-2phase-long": {**MLM, "mlm_on_copy": "false", "max_steps": "2800"},
    # relation + MLM pretraining of the encoder (LoRA) first, so the cached vectors of phase 1 carry co-occurrence
    "text+id-lora-2phase-pretrain": {
        **MLM,
        "mlm_on_copy": "false",
        "stages": "pretrain finetune",
        "rel_weight": "0.1",
        "pretrain_max_steps": "400",
    },
    # without the MLM part: the make-train recipe since the 3-seed ablation (MLM showed no gain beyond the spread)
    "text+id-lora-2phase-mlm0": {"mlm_weight": "0"},
    # the LoRA phase on its own learning-rate schedule (warmup, peak 1e-3, decay over its 400 steps) instead of the
    # shared schedule's tail (1/6 of the peak at step 2,000, decaying to 0)
    "text+id-lora-2phase-ps": {"mlm_weight": "0", "encoder_phase_schedule": "true"},
    # the towers and ID embeddings held where phase 1 left them: the adapters fit the text to fixed towers
    "text+id-lora-2phase-fixed": {"mlm_weight": "0", "encoder_phase_towers": "false"},
    # the same with the adapters on their own schedule (peak 1e-3 in the LoRA phase)
    "text+id-lora-2phase-fixed-ps": {
        "mlm_weight": "0",
        "encoder_phase_towers": "false",
        "encoder_phase_schedule": "true",
    },
    "text+id-adalora": {**LORA_600, "peft_type": "adalora"},
    "text+id-full": {**LORA_600, "peft_type": "none", "encoder_learning_rate": "3e-5"},
    "text+id-frozen": {
        **ONE_PHASE,
        "freeze_encoder": "true",
        "mlm_weight": "0",
        "max_fresh_items": "0",
        "max_steps": "2000",
    },
    "text+id-frozen-long": {
        **ONE_PHASE,
        "freeze_encoder": "true",
        "mlm_weight": "0",
        "max_fresh_items": "0",
        "max_steps": "4000",
        "eval_steps": "500",
        "save_steps": "500",
    },
    # the same 12000 steps as sasrec-id-long: the matched comparison on ML-1M
    "text+id-frozen-xlong": {
        **ONE_PHASE,
        "freeze_encoder": "true",
        "mlm_weight": "0",
        "max_fresh_items": "0",
        "max_steps": "12000",
        "eval_steps": "1000",
        "save_steps": "1000",
    },
    # cold-start fusion: each training step leaves half the items' ID vectors out, so their text vectors must rank
    "text+id-frozen-iddrop": {**FROZEN, "id_dropout": "0.5"},
    "text+id-lora-2phase-iddrop": {**MLM, "id_dropout": "0.5"},
    # the items left out get the ID vector predicted from their text (id_from_text), as cold items do at test time
    "text+id-frozen-idtext": {**FROZEN, "id_dropout": "0.5", "id_from_text": "true"},
    "text+id-frozen-idtext-p02": {**FROZEN, "id_dropout": "0.2", "id_from_text": "true"},
    # no ID dropout: cold_loss trains the text-to-ID map alone, the warm model as without it
    "text+id-frozen-coldmap": {**FROZEN, "id_from_text": "true"},
    "text+id-lora-2phase-coldmap": {"id_from_text": "true"},
    # the same map trained by ranking: half the warm items scored as cold items (targets and negatives alike)
    "text+id-frozen-coldrank": {**FROZEN, "id_from_text": "true", "cold_loss_type": "rank"},
    "text+id-lora-2phase-mlm0-coldrank": {"mlm_weight": "0", "id_from_text": "true", "cold_loss_type": "rank"},
    "text-frozen": {
        **ONE_PHASE,
        "use_item_ids": "false",
        "freeze_encoder": "true",
        "mlm_weight": "0",
        "max_fresh_items": "0",
        "max_steps": "2000",
    },
}
# MovieLens-1M with the history length the published strong runs use (200), to choose on valid against 50
VARIANTS["text+id-frozen-h200"] = {
    **VARIANTS["text+id-frozen"],
    "max_history": "200",
    "eval_steps": "500",
    "save_steps": "500",
}
# ML-1M: the history length chosen on valid at the same 4,000 steps as text+id-frozen-long (histories of 50)
VARIANTS["text+id-frozen-long-h200"] = {**VARIANTS["text+id-frozen-long"], "max_history": "200"}
# ML-100K: the make-train recipe with histories of 200 (most users' whole sequence), to choose on valid against 50
VARIANTS["text+id-lora-2phase-mlm0-h200"] = {**VARIANTS["text+id-lora-2phase-mlm0"], "max_history": "200"}
# ML-1M: the method's variant, matched with text+id-frozen-long-h200 (its phase 1: the same 4,000 steps, histories of
# 200), then 400 LoRA steps
VARIANTS["text+id-lora-2phase-mlm0-long-h200"] = {
    **VARIANTS["text+id-lora-2phase-mlm0"],
    "max_history": "200",
    "frozen_encoder_steps": "4000",
    "max_steps": "4400",
    "eval_steps": "400",
    "save_steps": "400",
}
BASELINES = ("popularity", "item-knn")
QUICK = {"variants": ["sasrec-id", "text+id-frozen"], "seeds": [0]}


def ensure_prepared(dataset: str, prepared: Path) -> None:
    """Prepare the dataset as the recipe would (same options), so the baselines see the recipe's splits."""
    if (prepared / "stats.json").is_file():
        return
    from recpipe.parser import RecipeParser
    from recpipe.pipeline import prepared_data

    data_args, _, training_args = RecipeParser().parse_recipe(
        ["--config", str(BASE_RECIPE), "--dataset", dataset, "--prepared_dir", str(prepared)]
    )
    prepared_data(data_args, training_args)


def run_baseline(name: str, dataset: str, prepared: Path) -> dict:
    import datasets

    from recpipe.baselines import item_knn_metrics, popularity_metrics

    dd = datasets.load_from_disk(str(prepared))
    fn = popularity_metrics if name == "popularity" else item_knn_metrics
    return fn(dd["train"], dd["test"], len(dd["items"]))


COLD_FLAGS = {"cold_item_fraction": "0.1"}


def chance_recall_at_10(prepared: Path) -> float:
    """Expected Recall@10 of a random ranking on test_cold: 10 / the number of candidates, averaged."""
    import datasets

    dd = datasets.load_from_disk(str(prepared))
    n = len(dd["items"])
    return sum(min(1.0, 10 / (n - len(k))) for k in dd["test_cold"]["known_items"]) / len(dd["test_cold"])


def run_variant(name: str, dataset: str, seed: int, extra: list[str], cold: bool = False) -> dict:
    kind = "cold" if cold else "warm"
    out = ROOT / "bench" / "runs" / kind / dataset / name / f"seed{seed}"
    cmd = [sys.executable, str(ROOT / "recipes" / "movielens.py"), "--config", str(BASE_RECIPE)]
    flags = {**VARIANTS[name], "dataset": dataset, "seed": str(seed), "output_dir": str(out), "resume": "false"}
    flags.update({"disable_tqdm": "true", "save_total_limit": "1", "report_to": "none"})
    if cold:
        flags.update(COLD_FLAGS, prepared_dir=str(ROOT / "data" / "prepared" / f"{dataset}-cold"))
    elif "max_history" in flags:  # histories of another length: prepared apart, not over the default's folder
        flags["prepared_dir"] = str(ROOT / "data" / "prepared" / f"{dataset}-h{flags['max_history']}")
    for key, value in flags.items():
        cmd += [f"--{key}", *value.split()]
    cmd += extra
    log = out.parent / f"seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed; see {log}")
    metrics = json.loads((out / "test_results.json").read_text())
    metrics["wall_s"] = round(time.perf_counter() - start, 1)
    # the selection evidence: the best valid NDCG@10 and the valid curve it was chosen from
    state = json.loads((out / "trainer_state.json").read_text())
    metrics["best_valid_ndcg@10"] = state.get("best_metric")
    metrics["valid_curve"] = [[h["step"], h["eval_ndcg@10"]] for h in state["log_history"] if "eval_ndcg@10" in h]
    # the largest resident set of any run so far in this process's children (Linux reports KiB)
    metrics["peak_rss_mib_children_max"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    metrics["command"] = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    if cold:
        metrics["chance_recall@10"] = round(chance_recall_at_10(Path(flags["prepared_dir"])), 4)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k", choices=["movielens-100k", "movielens-1m"])
    parser.add_argument("--variants", nargs="*", default=None, help=f"of {[*BASELINES, *VARIANTS]}")
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--mode", choices=["quick", "full"], default="full")
    parser.add_argument("--force", action="store_true", help="run again even if results exist")
    parser.add_argument("--cold", action="store_true", help="the cold-start protocol (10%% of items never trained)")
    args, extra = parser.parse_known_args()
    variants = args.variants or (QUICK["variants"] if args.mode == "quick" else list(VARIANTS))
    seeds = args.seeds or (QUICK["seeds"] if args.mode == "quick" else [0, 1, 2])
    prepared = ROOT / "data" / "prepared" / args.dataset
    names = variants if args.cold else [*BASELINES, *variants]
    ensure_prepared(args.dataset, prepared)
    for name in names:
        for seed in [0] if name in BASELINES else seeds:
            path = RESULTS.parent / ("cold" if args.cold else "quality") / args.dataset / name / f"seed{seed}.json"
            if path.exists() and not args.force:
                print(f"{args.dataset} {name} seed {seed}: done ({path.relative_to(ROOT)})")
                continue
            if name in BASELINES:
                metrics = run_baseline(name, args.dataset, prepared)
            elif name in VARIANTS:
                metrics = run_variant(name, args.dataset, seed, extra, cold=args.cold)
            else:
                raise SystemExit(f"unknown variant {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metrics, indent=2))
            print(f"{args.dataset} {name} seed {seed}: ndcg@10 {metrics['test_ndcg@10']:.4f}", flush=True)


if __name__ == "__main__":
    main()
