"""Time `full_ranking_metrics` at MovieLens-1M's shape: 6,040 users x 3,706 items, history masked.

Run from the repository root:

    .venv/bin/python bench/eval_speed.py

Writes ``bench/results/eval_speed.json``. Vectors are random (timing only); each user's exclusion list is a
history of realistic length (ML-1M: at least 20 ratings per user, 165.6 on average, long-tailed), never holding
the target. Each figure is the median of 5 timed runs after one warm-up run, with torch limited to 2 threads.
The timed call includes turning the Python exclusion lists into index tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from recpipe.metrics import full_ranking_metrics

NUM_USERS, NUM_ITEMS = 6040, 3706  # ML-1M: users, rated items
NUM_ROWS = NUM_ITEMS + 1  # item index 0 is padding
MIN_HISTORY, MEAN_HISTORY = 20, 165.6


def make_histories(rng: np.random.Generator, targets: np.ndarray) -> list[list[int]]:
    """Per-user history lists: 20 + a geometric tail, mean about 165.6, excluding padding 0 and the target."""
    lengths = MIN_HISTORY - 1 + rng.geometric(1.0 / (MEAN_HISTORY - MIN_HISTORY + 1), size=targets.size)
    lengths = np.minimum(lengths, NUM_ITEMS - 1)
    histories = []
    for target, length in zip(targets, lengths):
        items = rng.choice(NUM_ITEMS, size=length + 1, replace=False) + 1
        histories.append([int(i) for i in items[items != target][:length]])
    return histories


def time_runs(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of `runs` calls after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 384])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "eval_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]  # the machine is shared: a busy one slows every figure

    rng = np.random.default_rng(0)
    targets_np = rng.integers(1, NUM_ROWS, size=NUM_USERS)
    histories = make_histories(rng, targets_np)
    targets = torch.from_numpy(targets_np)
    history_lengths = [len(h) for h in histories]

    results = []
    for dim in args.dims:
        gen = torch.Generator().manual_seed(dim)
        users = torch.randn(NUM_USERS, dim, generator=gen)
        items = torch.randn(NUM_ROWS, dim, generator=gen)
        cases = {
            "history_excluded": dict(exclude=histories),
            "no_history_exclusion": dict(exclude=None),
            "history_excluded_random_ties": dict(exclude=histories, tie_break="random"),
            "history_excluded_with_topk_coverage": dict(exclude=histories, item_popularity=torch.ones(NUM_ROWS)),
        }
        for name, kwargs in cases.items():
            times, cpu_times = time_runs(
                partial(
                    full_ranking_metrics, users, items, targets, ks=(5, 10, 20), chunk_size=args.chunk_size, **kwargs
                ),
                args.runs,
            )
            row = {
                "dim": dim,
                "case": name,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "runs_s": times,
                "median_cpu_s": statistics.median(cpu_times),
            }
            results.append(row)
            print(
                f"d={dim:4d} {name:38s} median {row['median_s'] * 1000:7.1f} ms  (min {row['min_s'] * 1000:.1f}, "
                f"CPU {row['median_cpu_s'] * 1000:.1f} ms)"
            )

    report = {
        "benchmark": "full_ranking_metrics at ML-1M shape",
        "num_users": NUM_USERS,
        "num_items": NUM_ITEMS,
        "item_rows_with_padding": NUM_ROWS,
        "ks": [5, 10, 20],
        "chunk_size": args.chunk_size,
        "history_length_mean": float(np.mean(history_lengths)),
        "history_length_min": int(np.min(history_lengths)),
        "history_length_max": int(np.max(history_lengths)),
        "protocol": f"median of {args.runs} runs after 1 warm-up; exclusion-list conversion included; "
        "median_cpu_s is process CPU time (all threads), less sensitive to other load on a shared machine",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
