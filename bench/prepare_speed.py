"""How long reading and preparing the embedded MovieLens data takes (fetch excluded: it is a one-time download).

python bench/prepare_speed.py            # writes bench/results/prepare_speed.json
"""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

from recpipe.data import PrepareConfig, fetch, load_source, prepare

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    results = []
    for name in ("movielens-100k", "movielens-1m"):
        fetch(name)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            tables = load_source(name)
            read_s = time.perf_counter() - start
            dd, stats = prepare(tables, PrepareConfig())
            runs.append({"read_s": read_s, "prepare_s": time.perf_counter() - start - read_s})
        best = min(runs, key=lambda r: r["read_s"] + r["prepare_s"])
        results.append(
            {
                "dataset": name,
                "interactions": stats["raw"]["interactions"],
                "read_s": round(best["read_s"], 2),
                "prepare_s": round(best["prepare_s"], 2),
                "total_s": round(best["read_s"] + best["prepare_s"], 2),
                "filtered": stats["filtered"],
            }
        )
        print(results[-1])
    out = {
        "benchmark": "read + prepare (5-core, leave-one-out), best of 3",
        "results": results,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    path = ROOT / "bench" / "results" / "prepare_speed.json"
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
