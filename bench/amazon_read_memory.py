"""Peak memory and time of `read_amazon_2023` on a synthetic, schema-exact reviews file of at least 1 GiB.

Run from the repository root:

    .venv/bin/python bench/amazon_read_memory.py [--size-gb 1.0] [--keep] [--tmp-dir DIR]

Writes a reviews file (`Bench.jsonl`, every field of the Amazon Reviews 2023 review schema; review texts with a
long-tailed length distribution, median about 180 characters, as in the real dumps) and a small metadata file
(`meta_Bench.jsonl`) into a fresh temporary directory, reads them with `read_amazon_2023` in a child process, and
reports the file size, the wall time and the child's peak resident memory (Linux `VmHWM`, with `ru_maxrss` as a
cross-check; the data are generated in another process so its memory is not counted). The child also times a
second read, served from the Arrow cache. The temporary directory, Arrow cache included, is deleted unless
`--keep`. Figures go to `bench/results/amazon_read_memory.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30
RESULTS = Path(__file__).resolve().parent / "results" / "amazon_read_memory.json"


def _word_pool(rng: random.Random, n: int = 6000) -> list[str]:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 10))) for _ in range(n)]
    # A few non-ASCII words, so the file really is UTF-8 and not plain ASCII.
    return words + ["café", "naïve", "’s", "niño", "größe", "👍", "très", "déjà"]


def _corpus(rng: random.Random, words: list[str], n_chars: int = 4_000_000) -> str:
    parts, size = [], 0
    while size < n_chars:
        w = rng.choice(words)
        w = w.capitalize() + "." if rng.random() < 0.07 else w
        parts.append(w)
        size += len(w) + 1
    return " ".join(parts)


def _ids(rng: random.Random, n: int, length: int, prefix: str = "") -> list[str]:
    alphabet = string.ascii_uppercase + string.digits
    return [prefix + "".join(rng.choices(alphabet, k=length - len(prefix))) for _ in range(n)]


def generate_reviews(path: Path, target_bytes: int, n_users: int, items: list[str], seed: int) -> int:
    """Write JSON lines in the 2023 review schema until the file holds ``target_bytes``; return the line count."""
    rng = random.Random(seed)
    corpus = _corpus(rng, _word_pool(rng))
    users = _ids(rng, n_users, 28, "A")
    ratings, rating_weights = [1.0, 2.0, 3.0, 4.0, 5.0], [0.08, 0.05, 0.08, 0.15, 0.64]
    t0_ms, span_ms = 1_262_304_000_000, 13 * 365 * 86_400_000  # 2010 to 2023
    n, size = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target_bytes:
            chunk = []
            for _ in range(10_000):
                text_len = min(int(rng.lognormvariate(5.2, 1.1)) + 1, 12_000)
                title_len = min(int(rng.lognormvariate(3.0, 0.7)) + 1, 200)
                o = rng.randrange(len(corpus) - text_len)
                p = rng.randrange(len(corpus) - title_len)
                item = items[int(len(items) * rng.random() ** 2)]  # popularity skew
                images = []
                if rng.random() < 0.1:
                    image = f"https://m.media-amazon.com/images/I/{_ids(rng, 1, 11)[0]}"
                    images = [
                        {
                            "small_image_url": f"{image}._SL256_.jpg",
                            "medium_image_url": f"{image}._SL800_.jpg",
                            "large_image_url": f"{image}.jpg",
                            "attachment_type": "IMAGE",
                        }
                    ]
                record = {
                    "rating": rng.choices(ratings, rating_weights)[0],
                    "title": corpus[p : p + title_len].strip(),
                    "text": corpus[o : o + text_len].strip(),
                    "images": images,
                    "asin": item,
                    "parent_asin": item,
                    "user_id": users[int(n_users * rng.random() ** 1.5)],
                    "timestamp": t0_ms + rng.randrange(span_ms),
                    "helpful_vote": int(rng.expovariate(1.0)) if rng.random() < 0.3 else 0,
                    "verified_purchase": rng.random() < 0.85,
                }
                chunk.append(json.dumps(record, ensure_ascii=False))
            data = "\n".join(chunk) + "\n"
            f.write(data)
            size += len(data.encode("utf-8"))
            n += len(chunk)
    return n


def generate_meta(path: Path, items: list[str], seed: int) -> None:
    """Write one 2023 metadata line per item."""
    rng = random.Random(seed + 1)
    corpus = _corpus(rng, _word_pool(rng), 1_000_000)

    def text(mean_log: float) -> str:
        n = min(int(rng.lognormvariate(mean_log, 0.8)) + 1, 2000)
        o = rng.randrange(len(corpus) - n)
        return corpus[o : o + n].strip()

    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            record = {
                "main_category": "All Beauty",
                "title": text(3.5),
                "average_rating": round(rng.uniform(1, 5), 1),
                "rating_number": rng.randint(1, 5000),
                "features": [text(4.0) for _ in range(rng.randint(0, 5))],
                "description": [text(5.0) for _ in range(rng.randint(0, 2))],
                "price": round(rng.uniform(2, 200), 2) if rng.random() < 0.6 else None,
                "images": [{"thumb": "https://m.media-amazon.com/images/I/x._SS40_.jpg", "variant": "MAIN"}],
                "videos": [],
                "store": text(2.0) if rng.random() < 0.9 else None,
                "categories": [text(1.5) for _ in range(rng.randint(0, 4))],
                "details": {"Package Dimensions": "7.1 x 5.5 x 3 inches; 2.38 Pounds", "UPC": "617390882781"},
                "parent_asin": item,
                "bought_together": None,
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _peak_rss_kib() -> int:
    """This process's peak resident memory in KiB.

    Linux's ``VmHWM`` is reset by ``exec``, unlike ``ru_maxrss``, which keeps the high-water mark of the process
    that forked us; the parent of the measured process is kept small anyway, so both agree.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def generate(work: str, size_gb: float, n_items: int, n_users: int, seed: int) -> None:
    """Runs in its own process, so the generator's memory does not count towards the reading process's."""
    items = _ids(random.Random(seed + 2), n_items, 10, "B0")
    n = generate_reviews(Path(work) / "Bench.jsonl", math.ceil(size_gb * GIB), n_users, items, seed)
    generate_meta(Path(work) / "meta_Bench.jsonl", items, seed)
    print(json.dumps({"reviews": n}))


def child(reviews: str, meta: str, cache_dir: str) -> None:
    """Runs in the measured process: import, read once (timed, peak RSS), read again from the cache (timed)."""
    import datasets
    import pyarrow

    from recpipe.data.amazon import read_amazon_2023

    datasets.disable_progress_bars()
    after_import_kib = _peak_rss_kib()
    start = time.perf_counter()
    tables = read_amazon_2023(reviews, meta, cache_dir=cache_dir)
    read_s = time.perf_counter() - start
    peak_kib = _peak_rss_kib()
    ru_maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cache_bytes = sum(
        os.path.getsize(f["filename"]) for t in (tables.interactions, tables.items) for f in t.cache_files
    )
    start = time.perf_counter()
    again = read_amazon_2023(reviews, meta, cache_dir=cache_dir)
    cached_s = time.perf_counter() - start
    assert len(again.interactions) == len(tables.interactions)
    print(
        json.dumps(
            {
                "interactions": len(tables.interactions),
                "items": len(tables.items),
                "skipped": tables.skipped,
                "read_s": round(read_s, 2),
                "cached_reread_s": round(cached_s, 3),
                "peak_rss_after_imports_mib": round(after_import_kib / 1024, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "ru_maxrss_mib": round(ru_maxrss_kib / 1024, 1),
                "arrow_cache_bytes": cache_bytes,
                "datasets": datasets.__version__,
                "pyarrow": pyarrow.__version__,
            }
        )
    )


def _run(args: list[str], what: str) -> tuple[dict, float]:
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=repo_root)
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the {what} process failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="reviews file size in GiB (default 1.0)")
    parser.add_argument("--items", type=int, default=20_000, help="distinct items (metadata lines)")
    parser.add_argument("--users", type=int, default=600_000, help="distinct users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp-dir", default=None, help="where to create the temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and the Arrow cache")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("REVIEWS", "META", "CACHE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(args.generate, args.size_gb, args.items, args.users, args.seed)
        return
    if args.child:
        child(*args.child)
        return

    work = Path(tempfile.mkdtemp(prefix="recpipe_amazon_bench_", dir=args.tmp_dir))
    try:
        reviews, meta = work / "Bench.jsonl", work / "meta_Bench.jsonl"
        generated, generate_s = _run(
            [
                *("--generate", str(work), "--size-gb", str(args.size_gb)),
                *("--items", str(args.items), "--users", str(args.users), "--seed", str(args.seed)),
            ],
            "generating",
        )
        n_reviews = generated["reviews"]
        print(f"generated {reviews} ({reviews.stat().st_size / GIB:.2f} GiB, {n_reviews} lines) in {generate_s:.0f}s")

        measured, child_wall_s = _run(["--child", str(reviews), str(meta), str(work / "cache")], "reading")
        assert measured["interactions"] == n_reviews, (measured["interactions"], n_reviews)
        results = {
            "reviews_file_bytes": reviews.stat().st_size,
            "reviews_file_gib": round(reviews.stat().st_size / GIB, 3),
            "meta_file_bytes": meta.stat().st_size,
            "reviews": n_reviews,
            "mean_review_line_bytes": round(reviews.stat().st_size / n_reviews, 1),
            **measured,
            "read_reviews_per_s": round(n_reviews / measured["read_s"]),
            "reading_process_wall_s": round(child_wall_s, 2),
            "generate_s": round(generate_s, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d"),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
