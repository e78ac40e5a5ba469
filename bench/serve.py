"""Load and serving figures of a retrieval checkpoint: the first answer of a cold ``recpipe recommend`` and of a cold
``recpipe serve``, and the HTTP API's latency (p50/p99) and throughput under concurrent clients.

Run from the repository root on a checkpoint trained with the MovieLens-100K recipe (any number of steps: the
figures depend on the model's shape, not its quality):

    .venv/bin/python bench/serve.py --checkpoint outputs/movielens-100k-lora

Writes ``bench/results/serve.json``. Cold figures are wall-clock times of fresh processes (median of ``--repeats``);
the server binds to 127.0.0.1 and every request loop is bounded in count. Requests use real users' histories
(their last 50 items, from the checkpoint's known users).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_recommend(checkpoint: str, history: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "recpipe.cli", "recommend", "--checkpoint", checkpoint, "--history", *history],
        check=True,
        capture_output=True,
        cwd="/tmp",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return time.perf_counter() - start


def start_server(checkpoint: str, port: int, body: dict) -> tuple[subprocess.Popen, float]:
    """A fresh ``recpipe serve``; returns it and the seconds from launch to its first recommendation."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recpipe.cli", "serve", "--checkpoint", checkpoint, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/tmp",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}/recommend"
    for _ in range(1200):  # at most 120 s
        try:
            if httpx.post(url, json=body, timeout=5).status_code == 200:
                return proc, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer within 120 s")


def latencies(url: str, bodies: list[dict], clients: int, requests: int) -> dict:
    """``requests`` requests spread over ``clients`` threads, each with its own connection; p50/p99 and rate."""
    per_client = requests // clients
    times: list[list[float]] = [[] for _ in range(clients)]

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as http:
            for j in range(per_client):
                body = bodies[(k * per_client + j) % len(bodies)]
                t = time.perf_counter()
                answer = http.post(url, json=body)
                times[k].append(time.perf_counter() - t)
                answer.raise_for_status()

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = np.array([x for ts in times for x in ts]) * 1000
    return {
        "clients": clients,
        "requests": int(len(flat)),
        "p50_ms": round(float(np.percentile(flat, 50)), 2),
        "p99_ms": round(float(np.percentile(flat, 99)), 2),
        "requests_per_s": round(len(flat) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="outputs/movielens-100k-lora")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--output", default="bench/results/serve.json")
    args = parser.parse_args()
    checkpoint = str(Path(args.checkpoint).resolve())

    from recpipe.recommender import Recommender

    rec = Recommender.from_pretrained(checkpoint)
    users = sorted(rec.users)[:200]
    histories = [[rec.item_ids[i] for i in rec.users[u][0]] for u in users]

    cold_cli = [cold_recommend(checkpoint, histories[0][-5:]) for _ in range(args.repeats)]
    cold_serve, results = [], {}
    for _ in range(args.repeats):
        proc, seconds = start_server(checkpoint, free_port(), {"user_id": users[0], "k": 10})
        cold_serve.append(seconds)
        proc.terminate()
        proc.wait(timeout=30)

    proc, _ = start_server(checkpoint, port := free_port(), {"user_id": users[0], "k": 10})
    try:
        base = f"http://127.0.0.1:{port}"
        single = [{"history": h, "k": 10} for h in histories]
        explain = [{"history": h, "k": 10, "explain": True} for h in histories]
        batch = [{"histories": histories[k : k + 32], "k": 10} for k in range(0, len(histories), 32)]
        latencies(f"{base}/recommend", single, 1, 50)  # warm-up
        results["recommend"] = [latencies(f"{base}/recommend", single, c, args.requests) for c in (1, 4, 16)]
        results["recommend_explain"] = [latencies(f"{base}/recommend", explain, 1, args.requests // 4)]
        results["recommend_batch_32"] = [latencies(f"{base}/recommend/batch", batch, 1, args.requests // 8)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    record = {
        "checkpoint": args.checkpoint,
        "items": rec.index.size,
        "known_users": len(rec.users),
        "max_history": rec.max_history,
        "hidden_size": rec.model_config["hidden_size"],
        "cold_recommend_cli_s": round(statistics.median(cold_cli), 2),
        "cold_recommend_cli_runs_s": [round(x, 2) for x in cold_cli],
        "cold_serve_first_answer_s": round(statistics.median(cold_serve), 2),
        "cold_serve_runs_s": [round(x, 2) for x in cold_serve],
        **results,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": os.getloadavg()[0]},
    }
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
