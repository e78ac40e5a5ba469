"""Helpers shared by several test modules: tiny model and training arguments, a trainer on the synthetic data,
a recipe file, CTR tables and Amazon Reviews lines (test modules import from here, never from each other)."""

import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import yaml
from conftest import NUM_ITEMS, synthetic_prepared

from recpipe.collators import FreshItemEncoder, SequenceCollator, make_windows, tokenize_items
from recpipe.configs import ModelArguments, RecModelConfig, RecTrainingArguments
from recpipe.data import SourceTables
from recpipe.data.movielens import ITEM_FEATURES
from recpipe.data.schema import INTERACTION_FEATURES
from recpipe.evaluation import item_popularity
from recpipe.modeling import build_model
from recpipe.trainer import RecTrainer


def rec_model(margs: ModelArguments, num_items: int = NUM_ITEMS, max_history: int = 10, total_steps=None):
    """(model, tokenizer) built as the pipeline builds them, from command-line model arguments."""
    config = RecModelConfig.from_arguments(margs, num_items=num_items, max_history=max_history)
    return build_model(config, total_steps)


def review_2023(user="AGKHLEW2SOWHNMFQIJGBECAF7INQ", item="B00YQ6X8EO", rating=5.0, ts=1588687728923, **extra):
    record = {
        "rating": rating,
        "title": "Such a lovely scent but not overpowering.",
        "text": "This spray is really nice. It smells really good, goes on really fine, and does the trick. "
        "I will say it feels like you need a lot of it though to get the texture I want.",
        "images": [],
        "asin": item,
        "parent_asin": item,
        "user_id": user,
        "timestamp": ts,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    record.update(extra)
    return json.dumps(record)


def meta_2023(item="B01CUPMQZE", title="Howard LC0008 Leather Conditioner, 8-Ounce (4-Pack)", **fields):
    record = {
        "main_category": "All Beauty",
        "title": title,
        "average_rating": 4.8,
        "rating_number": 10,
        "features": [],
        "description": [],
        "price": None,
        "images": [{"thumb": "https://m.media-amazon.com/images/I/41qfjSfqNyL._SS40_.jpg", "variant": "MAIN"}],
        "videos": [],
        "store": "Howard Products",
        "categories": [],
        "details": {"Package Dimensions": "7.1 x 5.5 x 3 inches; 2.38 Pounds", "UPC": "617390882781"},
        "parent_asin": item,
        "bought_together": None,
    }
    record.update(fields)
    return json.dumps(record)


def write_lines(path, lines, gz=False):
    data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def make_tables(rows, item_ids=None, ratings_feature=INTERACTION_FEATURES):
    """``rows`` are ``(user, item, timestamp, rating)``; every item gets the title ``Movie <id>``."""
    users, items, ts, ratings = zip(*rows)
    item_ids = item_ids if item_ids is not None else sorted(set(items))
    return SourceTables(
        interactions=datasets.Dataset.from_dict(
            {"user_id": users, "item_id": items, "timestamp": ts, "rating": ratings}, features=ratings_feature
        ),
        items=datasets.Dataset.from_dict(
            {"item_id": item_ids, "title": [f"Movie {i}" for i in item_ids], "genres": [["Drama"]] * len(item_ids)},
            features=ITEM_FEATURES,
        ),
        name="synthetic",
    )


def random_rows(n_users=30, per_user=20, n_items=60, seed=0, max_time=200):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=per_user, replace=False)
        times = rng.integers(0, max_time, size=per_user)  # few distinct values: ties within and across users
        rows += [(f"u{u}", f"i{i}", int(t), float(rng.integers(1, 6))) for i, t in zip(chosen, times)]
    return rows


def recipe(tmp_path: Path, tiny_model_dir: str, prepared_dir: str, output_dir: Path, **overrides) -> Path:
    config = {
        "prepared_dir": prepared_dir,
        "max_history": 10,
        "model_name_or_path": tiny_model_dir,
        "hidden_size": 16,
        "user_layers": 1,
        "user_dropout": 0.1,
        "lora_target_modules": ["query", "value"],
        "inference_dtype": "float32",
        "output_dir": str(output_dir),
        "max_steps": 60,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "mlm_weight": 0.3,
        "max_fresh_items": 8,
        "item_cache_refresh_steps": 7,  # not aligned with the checkpoints: the cache must be restored
        "save_strategy": "steps",
        "save_steps": 20,
        "eval_strategy": "no",
        "logging_steps": 5,
        "report_to": "none",
        "use_cpu": True,
        "seed": 3,
        "disable_tqdm": True,
        **overrides,
    }
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def model_args(tiny_model_dir, **kw):
    base = dict(model_name_or_path=tiny_model_dir, hidden_size=16, user_layers=1, user_heads=2, user_dropout=0.0)
    base["lora_target_modules"] = ["query", "value"]
    base["inference_dtype"] = "float32"
    base["similarity"] = "cos"
    return ModelArguments(**{**base, **kw})


def training_args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=64,
        learning_rate=5e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        weight_decay=0.0,
        max_fresh_items=16,
        mlm_weight=0.5,
        rel_weight=0.3,
        temperature=0.05,
        use_cpu=True,
        seed=0,
    )
    return RecTrainingArguments(**{**base, **kw})


def make_trainer(tiny_model_dir, tmp_path, margs=None, **targs):
    dd, _ = synthetic_prepared()
    margs = margs or model_args(tiny_model_dir)
    args = training_args(tmp_path, **targs)
    model, tokenizer = rec_model(margs, total_steps=args.max_steps)
    from transformers import DataCollatorForLanguageModeling

    tokens = tokenize_items(list(dd["items"]["text"]), tokenizer, 16) if tokenizer else None
    mlm = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3) if tokenizer else None
    trainer = RecTrainer(
        model=model,
        args=args,
        train_dataset=make_windows(dd["train"], 10),
        eval_dataset=dd["valid"],
        data_collator=SequenceCollator(FreshItemEncoder(tokens, mlm, args.max_fresh_items)),
        item_tokens=tokens,
        popularity=item_popularity(dd["train"], NUM_ITEMS),
    )
    return trainer, dd, tokens


def write_movielens_100k(folder, n_users: int = 12, per_user: int = 16, seed: int = 0):
    """A GroupLens-format folder (u.data, u.item) whose titles are words of the tiny models' vocabularies."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    lines = []
    for u in range(n_users):
        for k, item in enumerate(rng.choice(NUM_ITEMS, size=per_user, replace=False)):
            lines.append(f"{u + 1}\t{item + 1}\t{int(rng.integers(1, 6))}\t{1000 + 50 * k + u}")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    genres = ["0"] * 18 + ["1"]
    items = ["|".join([str(i + 1), f"w{i}", "01-Jan-1995", "", "http://x", *genres]) for i in range(NUM_ITEMS)]
    (folder / "u.item").write_text("\n".join(items) + "\n")


def train_process(config: Path) -> subprocess.Popen:
    """``recpipe train --config config`` in a child process, its output dropped."""
    cmd = [sys.executable, "-m", "recpipe.cli", "train", "--config", str(config)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_once_written(proc: subprocess.Popen, checkpoint: Path, timeout: float = 600) -> None:
    """SIGKILL ``proc`` just after it has finished writing ``checkpoint`` (a real kill, mid-training)."""
    state = checkpoint / "trainer_state.json"
    deadline = time.time() + timeout
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
