"""Robustness benchmark: the default model (the make-train recipe) with and without adversarial training, each
evaluated under every perturbation and severity by ``recpipe robustness``.

Training goes through ``bench/quality.py`` (so both models also get their row in the quality table, and finished runs
are reused); the reports land in ``bench/results/robustness/<dataset>/<variant>/seed<k>.json`` and
``bench/report.py`` puts the comparison into BENCHMARKS.md.

    python bench/robustness.py --variants text+id-lora text+id-lora-fgm --seeds 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "robustness"
SEVERITIES = ["0.1", "0.3", "0.5"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--variants", nargs="+", default=["text+id-lora", "text+id-lora-fgm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--severities", nargs="+", default=SEVERITIES)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    for variant in args.variants:
        for seed in args.seeds:
            out = RESULTS / args.dataset / variant / f"seed{seed}.json"
            if out.exists() and not args.force:
                print(f"{variant} seed {seed}: done ({out.relative_to(ROOT)})")
                continue
            quality = [sys.executable, str(ROOT / "bench" / "quality.py"), "--dataset", args.dataset]
            subprocess.run([*quality, "--variants", variant, "--seeds", str(seed)], check=True, cwd=ROOT)
            checkpoint = ROOT / "bench" / "runs" / "warm" / args.dataset / variant / f"seed{seed}"
            report_dir = checkpoint / "robustness"
            start = time.perf_counter()
            cmd = [sys.executable, "-m", "recpipe.cli", "robustness", "--checkpoint", str(checkpoint)]
            cmd += ["--output-dir", str(report_dir), "--severities", *args.severities, "--seed", str(seed)]
            subprocess.run(cmd, check=True, cwd=ROOT)
            report = json.loads((report_dir / "robustness.json").read_text())
            report["wall_s"] = round(time.perf_counter() - start, 1)
            report["command"] = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2))
            print(f"{variant} seed {seed}: written {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
