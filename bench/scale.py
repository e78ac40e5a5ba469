"""Cost curves at 10K / 100K / 1M items: every figure of issue 17, each size in its own processes.

    python bench/scale.py --sizes 10K                 # quick (make bench): a few minutes
    python bench/scale.py --sizes 10K 100K 1M         # the curves; resumable: finished phases are kept
    python bench/scale.py --plot                      # bench/results/scale.png from the results so far

Data: `bench/scale_data.py` categories (Amazon Reviews 2023 format, ~10 reviews an item) in `--data-dir`. Results:
`bench/results/scale/<size>.json`, one entry a phase, each measured in a fresh child process (its peak RSS is that
process's VmHWM, the machine's 1-minute load average is recorded beside every timing: the machine is shared):

- prepare: `read_amazon_2023` (a fresh Arrow cache) + `prepare` (5-core, leave-one-out, item text) + save;
- encode: tokenizing the catalogue, and encoding it with the packaged MiniLM (bf16 autocast, length-sorted batches)
  = a refresh of the item-vector cache; both measured on a 1,024-item sample and scaled to the catalogue;
- train_*: one optimizer step (AdamW) of MiniLM + LoRA, batches of 32 windows of 50 items, 32 fresh items, λ_mlm 0.1:
  `text` (text-only items) and `text+id` (plus an ID embedding) with 1,024 sampled negatives (logQ-corrected),
  `full` (text+id, softmax over the whole catalogue) where it fits, and `text-before` (the code before this issue:
  the whole item table built every step). The text cache holds random vectors: a step's cost does not depend on
  them, and encoding a million items would take the phase's budget;
- eval: full-ranking metrics of 10,000 test users against the whole catalogue, known items excluded;
- index: FAISS flat / HNSW / IVF on hashed bag-of-words vectors of the item texts (128-d, normalised; a query is
  the mean of a user's last 50 items): build time, single-query latency p50/p99 with the user's known items
  excluded inside the search, Recall@10 against exact search with the same exclusions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "scale"
PHASES = (
    "prepare",
    "encode",
    "train_text",
    "train_text+id",
    "train_full",
    "train_text-before",
    "train_ratio",
    "train_ratio_id",
    "eval",
    "index",
    "index_sweep",
)
TIMEOUT_S = 20 * 60
FULL_SOFTMAX_MAX_ITEMS = 200_000  # logits of 32 x 50 positions x N items (and their gradient) must fit in memory


def parse_size(text: str) -> int:
    text = text.upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def paths(data_dir: Path, n: int) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "bench"))
    from scale_data import size_name

    name = f"Scale_{size_name(n)}"
    return {
        "reviews": data_dir / f"{name}.jsonl.gz",
        "meta": data_dir / f"meta_{name}.jsonl.gz",
        "cache": data_dir / f"arrow-{name}",
        "prepared": data_dir / f"prepared-{name}",
    }


# ---- phases (each runs in a child process) ----
def phase_prepare(p: dict, n: int) -> dict:
    import shutil

    import datasets

    from recpipe.data import PrepareConfig
    from recpipe.data.amazon import read_amazon_2023
    from recpipe.data.prepare import prepare, save_prepared

    datasets.disable_progress_bars()
    shutil.rmtree(p["cache"], ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    tables = read_amazon_2023(p["reviews"], p["meta"], cache_dir=p["cache"])
    read_s, read_cpu = time.perf_counter() - start, time.process_time() - cpu
    read_rss = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    dd, stats = prepare(tables, PrepareConfig(template="amazon2023"))
    prepare_s, prepare_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    shutil.rmtree(p["prepared"], ignore_errors=True)
    save_prepared(dd, stats, p["prepared"])
    reviews = len(tables.interactions)
    return {
        "reviews": reviews,
        "reviews_gz_bytes": p["reviews"].stat().st_size,
        "raw": stats["raw"],
        "filtered": stats["filtered"],
        "read_s": read_s,
        "read_cpu_s": read_cpu,
        "read_peak_rss_mib": read_rss,
        "prepare_s": prepare_s,
        "prepare_cpu_s": prepare_cpu,
        "save_s": time.perf_counter() - start,
        "reviews_per_s": reviews / (read_s + prepare_s),
        "reviews_per_cpu_s": reviews / (read_cpu + prepare_cpu),
        "peak_rss_mib": peak_rss_mib(),
    }


def tokens_of(dd, rows, max_text_length: int = 32) -> dict:
    """The catalogue's token tensors at full size ([N, max_text_length], as training holds them) with only ``rows``
    tokenized: tokenizing a million texts is a one-off cost (measured on a sample in the encode phase) that would
    take a phase's budget on this shared machine, and a step reads only its fresh items' rows."""
    import torch
    from transformers import AutoTokenizer

    from recpipe.backbone import PACKAGED_MINILM, resolve_model_path
    from recpipe.collators import tokenize_items

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(PACKAGED_MINILM))
    rows = torch.as_tensor(rows, dtype=torch.long)
    part = tokenize_items([dd["items"][int(r)]["text"] for r in rows], tokenizer, max_text_length)
    full = {}
    for key, value in part.items():
        full[key] = torch.zeros((len(dd["items"]), *value.shape[1:]), dtype=value.dtype)
        full[key][rows] = value
    return full, tokenizer


def phase_encode(p: dict, n: int) -> dict:
    import torch

    from recpipe.collators import tokenize_items
    from recpipe.configs import ModelArguments, RecModelConfig
    from recpipe.data import load_prepared
    from recpipe.modeling import build_model

    dd, _ = load_prepared(p["prepared"])
    num_items = len(dd["items"])
    model, _ = build_model(RecModelConfig.from_arguments(ModelArguments(), num_items=num_items, max_history=50))
    sample = min(num_items, 1024)
    rows = torch.randperm(num_items, generator=torch.Generator().manual_seed(0))[:sample]
    tokens, tokenizer = tokens_of(dd, rows[:64])  # loads the tokenizer, warms it up
    texts = [dd["items"][int(r)]["text"] for r in rows]
    start = time.perf_counter()
    part = tokenize_items(texts, tokenizer, 32)
    tokenize_s = time.perf_counter() - start
    model.refresh_text_cache({k: v[:64] for k, v in part.items()})  # warm-up
    start = time.perf_counter()
    model.refresh_text_cache(part, batch_size=256)
    seconds = time.perf_counter() - start
    return {
        "items": num_items,
        "sample_items": sample,
        "tokenize_catalogue_s": num_items * tokenize_s / sample,
        "encode_items_per_s": sample / seconds,
        "encode_catalogue_s": num_items * seconds / sample,
        "extrapolated": sample < num_items,
        "peak_rss_mib": peak_rss_mib(),
    }


class TrainSetup:
    """One catalogue's model (MiniLM + LoRA, random text cache), loss, optimizer and ten batches, ready to step."""

    def __init__(self, p: dict, variant: str):
        import tempfile

        import torch
        from transformers import DataCollatorForLanguageModeling

        from recpipe.collators import FreshItemEncoder, SequenceCollator, make_windows
        from recpipe.configs import ModelArguments, RecModelConfig, RecTrainingArguments
        from recpipe.data import load_prepared
        from recpipe.evaluation import item_popularity
        from recpipe.losses import CombinedLoss
        from recpipe.modeling import build_model

        dd, _ = load_prepared(p["prepared"])
        self.num_items = len(dd["items"])
        users = dd["train"].shuffle(seed=0).select(range(min(400, len(dd["train"]))))  # enough for 10 batches
        windows = make_windows(users, 50).shuffle(seed=0).select(range(320))
        used = sorted({i for w in windows["items"] for i in w})
        tokens, tokenizer = tokens_of(dd, [i - 1 for i in used])
        margs = ModelArguments(use_item_ids=variant != "text")
        config = RecModelConfig.from_arguments(margs, num_items=self.num_items, max_history=50)
        self.model, _ = build_model(config)
        torch.manual_seed(0)
        self.model.text_cache.normal_()  # the cost of a step does not depend on the cached vectors' values
        self.model.train()
        self.negatives = "full" if variant == "full" else "sampled"
        args = RecTrainingArguments(
            output_dir=tempfile.mkdtemp(), negatives=self.negatives, num_negatives=1024, mlm_weight=0.1, use_cpu=True
        )
        self.loss_fn = CombinedLoss(args, item_popularity(dd["train"], self.num_items))
        self.optimizer = torch.optim.AdamW([q for q in self.model.parameters() if q.requires_grad], lr=1e-4)
        self.rowwise_optimizer = None  # made at the first sparse_ids step (sparse_id_updates)
        mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        collate = SequenceCollator(FreshItemEncoder(tokens, mlm, 32))
        self.batches = [collate([windows[i * 32 + j] for j in range(32)]) for i in range(10)]

    def step(
        self, k: int, all_items: bool | None = None, sparse_ids: bool = False, clip: bool = False
    ) -> tuple[float, float]:
        """One optimizer step on batch ``k``: (wall, process CPU) seconds. ``all_items``: the whole item table (the
        code before this issue with sampled negatives), default only for the full softmax. ``sparse_ids``: the ID
        embedding's gradient sparse and only its rows looked up updated (``sparse_id_updates``, its own optimizer
        state); ``clip``: gradient clipping to norm 1 first, as the Trainer does."""
        import torch

        from recpipe.sparse_rows import RowwiseAdamW, clip_grad_norm_

        all_items = self.negatives == "full" if all_items is None else all_items
        batch = self.batches[k % len(self.batches)]
        optimizer = self.optimizer
        if self.model.id_embedding is not None:
            self.model.id_embedding.sparse = sparse_ids
            if sparse_ids and self.rowwise_optimizer is None:
                trained = [q for q in self.model.parameters() if q.requires_grad]
                self.rowwise_optimizer = RowwiseAdamW(trained, lr=1e-4)
            optimizer = self.rowwise_optimizer if sparse_ids else self.optimizer
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.model(**batch, all_items=all_items)
            loss = sum(self.loss_fn(self.model, outputs, batch).values())
        loss.backward()
        if clip:
            trained = [q for q in self.model.parameters() if q.requires_grad]
            (clip_grad_norm_ if sparse_ids else torch.nn.utils.clip_grad_norm_)(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start, time.process_time() - start_cpu


def medians(steps: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in steps), statistics.median(c for _, c in steps)


def phase_train(p: dict, n: int, variant: str) -> dict:
    """``text`` / ``text+id`` / ``full``: 2 warm-up and 8 measured steps. ``text-before``: the text model's step
    now and with the whole item table built (the code before this issue), alternated step by step."""
    import tempfile

    from safetensors.torch import save_file

    if variant == "full":
        from recpipe.data import load_prepared

        num_items = len(load_prepared(p["prepared"])[0]["items"])
        if num_items > FULL_SOFTMAX_MAX_ITEMS:
            return {"skipped": f"the full softmax's logits over {num_items:,} items do not fit: not measured"}
    setup = TrainSetup(p, "text" if variant == "text-before" else variant)
    warm = [setup.step(k) for k in range(2)]
    out = {"items": setup.num_items, "peak_rss_mib": peak_rss_mib()}  # a step's memory shows in its first steps
    if variant == "text-before":
        now, before = [], []
        for k in range(2, 10):  # side by side: the machine is shared, its load moves
            now.append(setup.step(k, all_items=False))
            before.append(setup.step(k, all_items=True))
        out["step_s"], out["step_cpu_s"] = medians(now)
        out["step_before_s"], out["step_before_cpu_s"] = medians(before)
        out["before_over_now_cpu"] = out["step_before_cpu_s"] / out["step_cpu_s"]
        out["peak_rss_with_before_mib"] = peak_rss_mib()
        return out
    steps = [setup.step(k) for k in range(2, 10)]
    out["step_s"], out["step_cpu_s"] = medians(steps)
    out["steps_s"] = [w for w, _ in warm + steps]
    out["trainable_parameters"] = sum(q.numel() for q in setup.model.parameters() if q.requires_grad)
    if variant in ("text", "text+id"):
        with tempfile.TemporaryDirectory() as folder:
            setup.model.save_pretrained(folder)
            out["checkpoint_weights_bytes"] = sum(f.stat().st_size for f in Path(folder).iterdir())
            save_file({"text_cache": setup.model.text_cache.contiguous()}, os.path.join(folder, "cache.safetensors"))
            out["checkpoint_item_cache_bytes"] = Path(folder, "cache.safetensors").stat().st_size
    return out


def phase_ratio(p: dict, p_small: dict) -> dict:
    """The text model's sampled-negatives step at this size and at 10K items, alternated step by step in one
    process: the ratio the issue's target is about, both measured under the same load."""
    if p["prepared"] == p_small["prepared"]:
        return {"skipped": "the reference size itself"}
    large, small = TrainSetup(p, "text"), TrainSetup(p_small, "text")
    for k in range(2):
        large.step(k), small.step(k)
    big, little = [], []
    for k in range(2, 10):
        big.append(large.step(k))
        little.append(small.step(k))
    out = {"items": large.num_items, "small_items": small.num_items}
    out["step_s"], out["step_cpu_s"] = medians(big)
    out["small_step_s"], out["small_step_cpu_s"] = medians(little)
    out["ratio_cpu"] = out["step_cpu_s"] / out["small_step_cpu_s"]
    out["ratio_wall"] = out["step_s"] / out["small_step_s"]
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def phase_ratio_id(p: dict, p_small: dict) -> dict:
    """The text+ID model's sampled-negatives step at this size and at 10K items, with the ID embedding's dense
    gradient (every row updated) and with ``sparse_id_updates`` (only the rows looked up), gradient clipping as the
    Trainer does: the four alternated step by step in one process, under the same load."""
    if p["prepared"] == p_small["prepared"]:
        return {"skipped": "the reference size itself"}
    large, small = TrainSetup(p, "text+id"), TrainSetup(p_small, "text+id")
    runs = {(size, sparse): [] for size in ("large", "small") for sparse in (False, True)}
    for k in range(10):
        for (size, sparse), steps in runs.items():
            measured = (large if size == "large" else small).step(k, sparse_ids=sparse, clip=True)
            if k >= 2:  # 2 warm-up steps each
                steps.append(measured)
    out = {"items": large.num_items, "small_items": small.num_items}
    for sparse, name in ((False, "dense"), (True, "sparse")):
        out[f"{name}_step_s"], out[f"{name}_step_cpu_s"] = medians(runs["large", sparse])
        out[f"{name}_small_step_s"], out[f"{name}_small_step_cpu_s"] = medians(runs["small", sparse])
        out[f"{name}_ratio_cpu"] = out[f"{name}_step_cpu_s"] / out[f"{name}_small_step_cpu_s"]
        out[f"{name}_ratio_wall"] = out[f"{name}_step_s"] / out[f"{name}_small_step_s"]
    out["dense_over_sparse_cpu"] = out["dense_step_cpu_s"] / out["sparse_step_cpu_s"]
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def phase_eval(p: dict, n: int) -> dict:
    import torch

    from recpipe.configs import ModelArguments, RecModelConfig
    from recpipe.data import load_prepared
    from recpipe.evaluation import user_vectors
    from recpipe.metrics import full_ranking_metrics
    from recpipe.modeling import build_model

    dd, _ = load_prepared(p["prepared"])
    num_items = len(dd["items"])
    model, _ = build_model(RecModelConfig.from_arguments(ModelArguments(), num_items=num_items, max_history=50))
    torch.manual_seed(0)
    model.text_cache.normal_()
    model.eval()
    test = dd["test"].select(range(min(10_000, len(dd["test"]))))
    start = time.perf_counter()
    with torch.no_grad():
        table = model.scoring_vectors(model.item_table())
    table_s = time.perf_counter() - start
    start = time.perf_counter()
    users, targets, rows = user_vectors(model, table, test)
    users_s = time.perf_counter() - start
    known = list(test["known_items"])
    start = time.perf_counter()
    metrics = full_ranking_metrics(users, table.float(), targets, exclude=[known[r] for r in rows.tolist()])
    ranking_s = time.perf_counter() - start
    return {
        "items": num_items,
        "users": len(test),
        "item_table_s": table_s,
        "user_vectors_s": users_s,
        "ranking_s": ranking_s,
        "eval_s": table_s + users_s + ranking_s,
        "ndcg@10_random_model": metrics["ndcg@10"],
        "peak_rss_mib": peak_rss_mib(),
    }


def item_and_query_vectors(dd, dim: int = 128, queries: int = 1000):
    """Hashed bag-of-words of each item's text, randomly projected to ``dim`` and normalised; a query is the
    normalised mean of a test user's last 50 items. Exclusions: the user's known items."""
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = dd["items"]["text"]
    bags = HashingVectorizer(n_features=2**16, alternate_sign=False, norm="l2").transform(texts)
    projection = np.random.default_rng(0).normal(size=(2**16, dim)).astype(np.float32)
    items = np.asarray(bags @ projection, dtype=np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True) + 1e-12
    test = dd["test"].select(range(min(queries, len(dd["test"]))))
    q = np.stack([items[np.asarray(h[-50:]) - 1].mean(0) for h in test["history"]]).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    return items, q, [list(k) for k in test["known_items"]]


def exact_top10(items, queries, exclude):
    import numpy as np

    out = np.zeros((len(queries), 10), dtype=np.int64)
    for s in range(0, len(queries), 100):
        scores = queries[s : s + 100] @ items.T
        for r, banned in enumerate(exclude[s : s + 100]):
            scores[r, np.asarray(banned, dtype=np.int64) - 1] = -np.inf
        out[s : s + 100] = np.argsort(-scores, axis=1)[:, :10] + 1
    return out


def phase_index(p: dict, n: int) -> dict:
    import numpy as np

    from recpipe.data import load_prepared
    from recpipe.index import ItemIndex

    dd, _ = load_prepared(p["prepared"])
    start = time.perf_counter()
    items, queries, exclude = item_and_query_vectors(dd)
    out = {"items": len(items), "queries": len(queries), "vectors_s": time.perf_counter() - start}
    exact = exact_top10(items, queries, exclude)
    ids = np.arange(1, len(items) + 1)
    for kind in ("flat", "hnsw", "ivf"):
        start = time.perf_counter()
        index = ItemIndex(items.shape[1], kind=kind)
        index.add(items, ids)
        build_s = time.perf_counter() - start
        measured = len(queries) if kind != "flat" else min(len(queries), 200)
        latencies, cpu, found = [], [], []
        for q in range(measured):  # one user a request, as a server sees them
            start, start_cpu = time.perf_counter(), time.process_time()
            _, top = index.search(queries[q : q + 1], 10, [exclude[q]])
            latencies.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            found.append(top[0])
        recall = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact[:measured])]))
        out[kind] = {
            "build_s": build_s,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99)),
            "cpu_p50_ms": 1000 * float(np.percentile(cpu, 50)),
            "cpu_p99_ms": 1000 * float(np.percentile(cpu, 99)),
            "recall@10": recall,
            "queries": measured,
            "settings": {"nlist": index.nlist, "nprobe": index.nprobe, "ef_search": index.ef_search},
        }
        del index
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def phase_index_sweep(p: dict, n: int) -> dict:
    """Recall@10 against latency for HNSW efSearch and IVF nprobe settings, on one build of each (the same vectors,
    queries and exclusions as the index phase, 500 queries a setting)."""
    import numpy as np

    from recpipe.data import load_prepared
    from recpipe.index import ItemIndex

    dd, _ = load_prepared(p["prepared"])
    items, queries, exclude = item_and_query_vectors(dd, queries=500)
    exact = exact_top10(items, queries, exclude)
    out = {"items": len(items), "queries": len(queries)}
    for kind, knob, values in (("ivf", "nprobe", (32, 64, 128, 256)), ("hnsw", "ef_search", (128, 256, 512, 1024))):
        start = time.perf_counter()
        index = ItemIndex(items.shape[1], kind=kind)
        index.add(items, np.arange(1, len(items) + 1))
        out[f"{kind}_build_s"] = time.perf_counter() - start
        for value in values:
            setattr(index, knob, value)
            latencies, cpu, found = [], [], []
            for q in range(len(queries)):
                start, start_cpu = time.perf_counter(), time.process_time()
                _, top = index.search(queries[q : q + 1], 10, [exclude[q]])
                latencies.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                found.append(top[0])
            out[f"{kind}_{knob}={value}"] = {
                "p50_ms": 1000 * float(np.percentile(latencies, 50)),
                "p99_ms": 1000 * float(np.percentile(latencies, 99)),
                "cpu_p99_ms": 1000 * float(np.percentile(cpu, 99)),
                "recall@10": float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])),
            }
            print(kind, value, out[f"{kind}_{knob}={value}"], file=sys.stderr, flush=True)
        del index
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def run_child(phase: str, n: int, data_dir: Path) -> dict:
    p = paths(data_dir, n)
    if phase == "prepare":
        return phase_prepare(p, n)
    if phase == "encode":
        return phase_encode(p, n)
    if phase == "train_ratio":
        return phase_ratio(p, paths(data_dir, 10_000))
    if phase == "train_ratio_id":
        return phase_ratio_id(p, paths(data_dir, 10_000))
    if phase.startswith("train_"):
        return phase_train(p, n, phase.removeprefix("train_"))
    if phase == "eval":
        return phase_eval(p, n)
    if phase == "index":
        return phase_index(p, n)
    if phase == "index_sweep":
        return phase_index_sweep(p, n)
    raise ValueError(phase)


# ---- the parent: data, children, results ----
def measure(sizes: list[int], phases: list[str], data_dir: Path, force: bool) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from scale_data import generate, size_name

    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        path = RESULTS / f"{size_name(n)}.json"
        results = json.loads(path.read_text()) if path.is_file() else {"items_generated": n}
        if "data" not in results:
            results["data"] = generate(data_dir, n)
        for phase in phases:
            if phase in results and not force:
                continue
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            env.setdefault("OMP_NUM_THREADS", "2")
            load = os.getloadavg()[0]
            start = time.perf_counter()
            cmd = [sys.executable, __file__, "--child", phase, "--sizes", str(n), "--data-dir", str(data_dir)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                results[phase] = {"failed": f"over the {TIMEOUT_S} s budget of a phase"}
            else:
                if proc.returncode != 0:
                    results[phase] = {"failed": proc.stderr[-2000:]}
                else:
                    results[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
            measured = results[phase]
            measured.update(wall_s=time.perf_counter() - start, load_before=load, load_after=os.getloadavg()[0])
            measured["date"] = time.strftime("%Y-%m-%d %H:%M")
            # read again before writing: another run may have written other phases of this size meanwhile
            results = {**(json.loads(path.read_text()) if path.is_file() else results), phase: measured}
            path.write_text(json.dumps(results, indent=2))  # after every phase: resumable
            print(f"{size_name(n)} {phase}: {json.dumps(results[phase])[:400]}", flush=True)


def load_results() -> dict[int, dict]:
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        out[r["items_generated"]] = r
    return dict(sorted(out.items()))


def plot() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = load_results()
    ns = list(res)

    def series(get):
        xs, ys = [], []
        for n in ns:
            try:
                y = get(res[n])
            except (KeyError, TypeError):
                continue
            if y is not None:
                xs.append(n)
                ys.append(y)
        return xs, ys

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    curves = {
        "read + prepare": lambda r: r["prepare"]["read_s"] + r["prepare"]["prepare_s"],
        "catalogue encoding = cache refresh": lambda r: r["encode"]["encode_catalogue_s"],
        "evaluation, 10K users": lambda r: r["eval"]["eval_s"],
        "HNSW build": lambda r: r["index"]["hnsw"]["build_s"],
        "IVF build": lambda r: r["index"]["ivf"]["build_s"],
    }
    for label, get in curves.items():
        axes[0].plot(*series(get), marker="o", label=label)
    axes[0].set_title("one-off costs (s)")
    steps = {
        "step, text, sampled (CPU s)": lambda r: r["train_text"]["step_cpu_s"],
        "step, text, sampled, beside the 10K one (CPU s)": lambda r: r["train_ratio"]["step_cpu_s"],
        "step, text+ID, sampled (CPU s)": lambda r: r["train_text+id"]["step_cpu_s"],
        "step, text+ID, full softmax (CPU s)": lambda r: r["train_full"].get("step_cpu_s"),
        "step, text, before (whole table, CPU s)": lambda r: r["train_text-before"]["step_before_cpu_s"],
        "query p99 ms, HNSW (efSearch 128)": lambda r: r["index"]["hnsw"]["p99_ms"],
        "query p99 ms, IVF (nprobe 32)": lambda r: r["index"]["ivf"]["p99_ms"],
        "query p99 ms, flat": lambda r: r["index"]["flat"]["p99_ms"],
    }
    for label, get in steps.items():
        axes[1].plot(*series(get), marker="o", label=label)
    axes[1].set_title("per training step (CPU s) / per query (ms)")
    memory = {
        "peak RSS, read + prepare": lambda r: r["prepare"]["peak_rss_mib"],
        "peak RSS, train text": lambda r: r.get("train_text", r["train_text-before"])["peak_rss_mib"],
        "peak RSS, train text+ID": lambda r: r["train_text+id"]["peak_rss_mib"],
        "checkpoint weights, text+ID (MiB)": lambda r: r["train_text+id"]["checkpoint_weights_bytes"] / 2**20,
        "item cache in a checkpoint (MiB)": lambda r: r["train_text+id"]["checkpoint_item_cache_bytes"] / 2**20,
    }
    for label, get in memory.items():
        axes[2].plot(*series(get), marker="o", label=label)
    axes[2].set_title("memory and checkpoint size (MiB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("catalogue items")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "bench" / "results" / "scale.png"
    fig.savefig(out, dpi=110)
    return out


ROWS = [
    ("reviews read", lambda r: f"{r['prepare']['reviews']:,}"),
    ("items after 5-core", lambda r: f"{r['prepare']['filtered']['items']:,}"),
    ("read + prepare, s", lambda r: f"{r['prepare']['read_s']:.1f} + {r['prepare']['prepare_s']:.1f}"),
    (
        "read + prepare, reviews/s (per CPU-second)",
        lambda r: f"{r['prepare']['reviews_per_s']:,.0f} ({r['prepare']['reviews_per_cpu_s']:,.0f})",
    ),
    ("read + prepare, peak RSS MiB", lambda r: f"{r['prepare']['peak_rss_mib']:,.0f}"),
    ("tokenize catalogue, s (sample-scaled)", lambda r: f"{r['encode']['tokenize_catalogue_s']:,.0f}"),
    ("encode catalogue = cache refresh, s (sample-scaled)", lambda r: f"{r['encode']['encode_catalogue_s']:,.0f}"),
    ("step, text, 1,024 sampled, s (CPU s)", lambda r: _step(r["train_text"])),
    ("same step beside the 10K one, s (CPU s); ratio", lambda r: _ratio(r["train_ratio"])),
    ("step, text+ID, 1,024 sampled, s (CPU s)", lambda r: _step(r["train_text+id"])),
    ("step, text+ID beside the 10K one, CPU s (1 thread); dense ID gradient", lambda r: _ratio_id(r, "dense")),
    ("same, sparse_id_updates", lambda r: _ratio_id(r, "sparse")),
    ("step, text+ID, full softmax, s (CPU s)", lambda r: _step(r["train_full"])),
    ("step, text, before this issue (whole table) beside now, CPU s", lambda r: _before(r["train_text-before"])),
    (
        "train peak RSS MiB, text / text+ID",
        lambda r: (
            f"{_get(r, 'peak_rss_mib', 'train_text', 'train_text-before')} / "
            f"{_get(r, 'peak_rss_mib', 'train_text+id')}"
        ),
    ),
    (
        "checkpoint weights MiB, text / text+ID",
        lambda r: (
            f"{_get(r, 'checkpoint_weights_bytes', 'train_text', scale=2**20)} / "
            f"{_get(r, 'checkpoint_weights_bytes', 'train_text+id', scale=2**20)}"
        ),
    ),
    (
        "item cache in a checkpoint MiB (save_item_cache)",
        lambda r: _get(r, "checkpoint_item_cache_bytes", "train_text", "train_text+id", scale=2**20),
    ),
    (
        "evaluation, 10K users, s (peak RSS MiB)",
        lambda r: f"{r['eval']['eval_s']:.1f} ({r['eval']['peak_rss_mib']:,.0f})",
    ),
    *[
        (f"{kind}: build s / p50 / p99 (CPU p99) ms / Recall@10", lambda r, kind=kind: _index(r["index"][kind]))
        for kind in ("flat", "hnsw", "ivf")
    ],
    ("Recall@10 @ p99 by setting (500 queries)", lambda r: _sweep(r)),
    ("load average during the phases", lambda r: _loads(r)),
]


def _step(phase: dict) -> str:
    if "skipped" in phase or "failed" in phase:
        return "not measured" if "skipped" in phase else "failed"
    return f"{phase['step_s']:.2f} ({phase['step_cpu_s']:.2f})" if "step_cpu_s" in phase else f"{phase['step_s']:.2f}"


def _get(r: dict, key: str, *phases: str, scale: float = 1) -> str:
    """``key`` of the first of ``phases`` that has it, or "–"."""
    for phase in phases:
        if key in r.get(phase, {}):
            value = r[phase][key] / scale
            return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
    return "–"


def _ratio(phase: dict) -> str:
    return (
        f"{phase['step_s']:.1f} ({phase['step_cpu_s']:.2f}) vs {phase['small_step_s']:.1f} "
        f"({phase['small_step_cpu_s']:.2f}); **{phase['ratio_cpu']:.2f}×**"
    )


def _ratio_id(r: dict, kind: str) -> str:
    phase = r["train_ratio_id"]
    return (
        f"{phase[f'{kind}_step_cpu_s']:.2f} vs {phase[f'{kind}_small_step_cpu_s']:.2f}; "
        f"**{phase[f'{kind}_ratio_cpu']:.2f}×**"
    )


def _before(phase: dict) -> str:
    return f"{phase['step_before_cpu_s']:.2f} vs {phase['step_cpu_s']:.2f} ({phase['before_over_now_cpu']:.2f}×)"


def _sweep(r: dict) -> str:
    sweep = r["index_sweep"]
    cells = [
        f"{k.split('_', 1)[1]}: {v['recall@10']:.3f} @ {v['p99_ms']:.1f} ms"
        for k, v in sweep.items()
        if isinstance(v, dict) and "recall@10" in v
    ]
    return "; ".join(cells)


def _index(i: dict) -> str:
    return f"{i['build_s']:.1f} / {i['p50_ms']:.2f} / {i['p99_ms']:.2f} ({i['cpu_p99_ms']:.2f}) / {i['recall@10']:.3f}"


def _loads(r: dict) -> str:
    loads = [v["load_before"] for k, v in r.items() if isinstance(v, dict) and "load_before" in v]
    return f"{min(loads):.1f}–{max(loads):.1f}"


def table() -> str:
    """The figures as a markdown table, one column a size."""
    res = load_results()
    sys.path.insert(0, str(ROOT / "bench"))
    from scale_data import size_name

    lines = ["| measure | " + " | ".join(size_name(n) for n in res) + " |", "| --- |" + " --- |" * len(res)]
    for label, get in ROWS:
        cells = []
        for r in res.values():
            try:
                cells.append(get(r))
            except (KeyError, TypeError):
                cells.append("–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["10K"])
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "data" / "scale")
    parser.add_argument("--force", action="store_true", help="measure finished phases again")
    parser.add_argument("--plot", action="store_true", help="only draw bench/results/scale.png and print the table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    if args.child:
        print(json.dumps(run_child(args.child, sizes[0], args.data_dir)))
        return
    if not args.plot:
        measure(sizes, args.phases, args.data_dir, args.force)
    print(f"wrote {plot()}")
    print(table())


if __name__ == "__main__":
    main()
