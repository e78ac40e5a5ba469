"""Probe the two-phase recipe's LoRA phase cheaply: continue a finished run's checkpoint (e.g. the end of the
cached-vector phase, ``checkpoint-2000``) under other settings, and record the valid curve from there on.

The phase-1 steps are deterministic, so every probe from the same checkpoint starts from the same state; a probe
costs the LoRA phase only (~5 minutes on 2 cores instead of ~13). Settings that change the optimizer's parameter
groups (``encoder_phase_schedule``, ``encoder_learning_rate``) cannot continue a checkpoint made without them:
measure those with ``bench/quality.py``. A probe is no run: its output folder's settings record is deliberately not
checked (the settings differ from the checkpoint's on purpose), and its figures are valid NDCG@10 only.

    python bench/phase2_probe.py --name encoder-dropout0 --seed 0 \\
        --checkpoint bench/runs/warm/movielens-100k/text+id-lora-2phase/seed0/checkpoint-2000 -- --encoder_dropout 0
"""

from __future__ import annotations

import argparse
import json
import runpy
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "probes"
RECIPE = ROOT / "recipes" / "movielens" / "config_lora.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder of a finished two-phase run")
    parser.add_argument("--name", required=True, help="the probe's name (results under bench/results/probes/)")
    parser.add_argument("--seed", type=int, required=True, help="the seed of the run the checkpoint comes from")
    parser.add_argument("flags", nargs="*", help="recipe flags after --, e.g. -- --encoder_dropout 0")
    args = parser.parse_args()
    command = " ".join(["python", "bench/phase2_probe.py", *sys.argv[1:]])
    source = Path(args.checkpoint).resolve()
    out = ROOT / "bench" / "runs" / "probes" / args.name / f"seed{args.seed}"
    if not (out / source.name).is_dir():
        shutil.copytree(source, out / source.name)

    import recpipe.pipeline

    recpipe.pipeline.claim_output_dir = lambda *a, **k: None  # see the module's docstring
    flags = ["--config", str(RECIPE), "--seed", str(args.seed), "--output_dir", str(out), "--report_to", "none"]
    sys.argv = ["recipes/movielens.py", *flags, "--disable_tqdm", "true", "--save_total_limit", "1", *args.flags]
    runpy.run_path(str(ROOT / "recipes" / "movielens.py"), run_name="__main__")

    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    start = json.loads((source / "trainer_state.json").read_text())["global_step"]
    curve = [[h["step"], h["eval_ndcg@10"]] for h in history if "eval_ndcg@10" in h]
    result = {
        "checkpoint": str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source),
        "flags": args.flags,
        "valid_at_start": next(v for s, v in curve if s == start),
        "valid_after": [[s, v] for s, v in curve if s > start],
        "command": command,
    }
    path = RESULTS / args.name / f"seed{args.seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{args.name} seed {args.seed}: valid NDCG@10 {result['valid_at_start']:.4f} at step {start}, then "
        + ", ".join(f"{v:.4f} at {s}" for s, v in result["valid_after"])
    )


if __name__ == "__main__":
    main()
