"""From canonical tables to the ``DatasetDict`` the trainers read, with ``stats.json`` beside it.

Steps, in order (each one's effect is counted in the stats):

1. drop exact duplicate interactions (same user, item and timestamp);
2. drop interactions whose item has no metadata (or stop, under ``on_bad_record="error"``);
3. keep ratings ``>= rating_threshold`` when implicit feedback is asked for;
4. iterative k-core on users and items;
5. order each user's interactions chronologically. Tied timestamps are common in MovieLens (in ~44% of ML-100K
   users the last two interactions tie), so the tie-break decides the test item: a stable sort on the timestamp
   keeps the file's row order among ties. This is deterministic and recorded in the stats;
6. split: leave-one-out (last → test, second last → valid, the rest → train) or a global temporal split;
7. render item text from the dataset's template; the text of every item with metadata (k-core or not) forms
   the unlabelled ``pretrain`` corpus. Items whose file has none of the template's columns are an error before
   any work (naming the file and the columns it has).

The output folder is written under a temporary name and renamed into place once complete (with ``stats.json``, the
mark of a prepared dataset), under a lock (``prepare_lock``) that makes concurrent preparations of one folder take
turns: a killed or concurrent ``prepare`` never leaves a partial or mixed dataset that looks prepared.

Splits (item indices are 1-based; 0 is padding):
    train:   user_id, item_ids (the user's whole training sequence; trainers cut it into windows)
    valid/test: user_id, history (last ``max_history`` items before the target), target,
             known_items (every item the user had before the target, for the "exclude history" protocol)
    test_cold: (with ``cold_item_fraction``) the same layout; targets are items that never occur in training
    items:   item_index, item_id, title, text
    pretrain: item_id, text
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd

from recpipe.atomic_files import atomic_path, file_lock, remove_leftovers
from recpipe.data.schema import DataFormatError, SourceTables
from recpipe.data.templates import TEMPLATE_NAMES, item_template, render_item_text
from recpipe.errors import InvalidInputError, MissingInputError

logger = logging.getLogger(__name__)

TIE_BREAK = "stable sort on timestamp; equal timestamps keep the source file's row order"
ITEM_TABLE_FEATURES = datasets.Features(
    {
        "item_index": datasets.Value("int64"),
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "text": datasets.Value("string"),
    }
)
PRETRAIN_FEATURES = datasets.Features({"item_id": datasets.Value("string"), "text": datasets.Value("string")})
EMPTY_SPLITS = "empty_splits.json"


@dataclass
class PrepareConfig:
    """How raw interactions become training and evaluation data."""

    rating_threshold: float | None = field(
        default=None, metadata={"help": "Keep interactions with rating >= this (implicit feedback); None keeps all."}
    )
    min_user_interactions: int = field(default=5, metadata={"help": "k-core: minimum interactions per user."})
    min_item_interactions: int = field(default=5, metadata={"help": "k-core: minimum interactions per item."})
    split: Literal["leave_one_out", "temporal"] = field(
        default="leave_one_out", metadata={"help": "leave_one_out (per user) or temporal (global time cut-offs)."}
    )
    valid_fraction: float = field(default=0.1, metadata={"help": "temporal split: share of the latest interactions."})
    test_fraction: float = field(default=0.1, metadata={"help": "temporal split: share of the latest interactions."})
    max_history: int = field(default=50, metadata={"help": "Histories keep the latest this many items."})
    template: str = field(
        default="movielens",
        metadata={"help": f"Item text template: {list(TEMPLATE_NAMES)} (auto: every text column of the items file)."},
    )
    cold_item_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Cold-start protocol: this share of items never occurs in training; a test_cold split asks for "
            "them (leave-one-out only)."
        },
    )
    cold_seed: int = field(default=0, metadata={"help": "Seed of the choice of cold items."})
    on_bad_record: Literal["error", "skip"] = field(
        default="error", metadata={"help": "error: stop at the first bad record; skip: drop and count by kind."}
    )

    def __post_init__(self):
        if self.split not in ("leave_one_out", "temporal"):
            raise InvalidInputError(f"split must be 'leave_one_out' or 'temporal', got {self.split!r}")
        if self.template not in TEMPLATE_NAMES:
            raise InvalidInputError(f"unknown template {self.template!r}; choose one of {list(TEMPLATE_NAMES)}")
        if self.min_user_interactions < 1 or self.min_item_interactions < 1 or self.max_history < 1:
            raise InvalidInputError("min_user_interactions, min_item_interactions and max_history must be >= 1")
        if not 0 <= self.cold_item_fraction < 1:
            raise InvalidInputError("cold_item_fraction must lie in [0, 1)")
        if self.cold_item_fraction and self.split != "leave_one_out":
            raise InvalidInputError("the cold-start split is defined for split: leave_one_out")
        if not 0 < self.valid_fraction + self.test_fraction < 1:
            raise InvalidInputError("valid_fraction + test_fraction must lie in (0, 1)")


def k_core(df: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Iteratively drop users and items with too few interactions until both conditions hold."""
    while True:
        user_counts = df.groupby("user_id", sort=False)["item_id"].transform("size")
        item_counts = df.groupby("item_id", sort=False)["user_id"].transform("size")
        keep = (user_counts >= min_user) & (item_counts >= min_item)
        if keep.all():
            return df
        df = df[keep]


def _tail(seq: np.ndarray, n: int) -> list[int]:
    return seq[-n:].tolist() if n > 0 else []


def _leave_one_out(seqs: pd.Series, users: pd.Series, max_history: int) -> tuple[dict, dict, dict, int]:
    train, valid, test = (
        {"user_id": [], "item_ids": []},
        {k: [] for k in ("user_id", "history", "target", "known_items")},
        {k: [] for k in ("user_id", "history", "target", "known_items")},
    )
    too_short = 0
    for user, seq in zip(users, seqs):
        if len(seq) < 3:
            too_short += 1
            continue
        train["user_id"].append(user)
        train["item_ids"].append(seq[:-2].tolist())
        for split, cut in ((valid, len(seq) - 2), (test, len(seq) - 1)):
            target = int(seq[cut])
            split["user_id"].append(user)
            split["history"].append(_tail(seq[:cut], max_history))
            split["target"].append(target)
            split["known_items"].append(sorted(set(seq[:cut].tolist()) - {target}))
    return train, valid, test, too_short


def _cold_start(seqs: pd.Series, users: pd.Series, cold: np.ndarray, max_history: int):
    """Take cold items out of every sequence; each user's last cold item (after at least one warm one) becomes a
    ``test_cold`` example whose history is the warm items before it. Returns the warm sequences and the split."""
    split = {k: [] for k in ("user_id", "history", "target", "known_items")}
    warm_seqs = []
    for user, seq in zip(users, seqs):
        is_cold = np.isin(seq, cold)
        warm_seqs.append(seq[~is_cold])
        positions = np.flatnonzero(is_cold)
        for p in positions[::-1]:
            before = seq[:p][~is_cold[:p]]
            if len(before):
                split["user_id"].append(user)
                split["history"].append(_tail(before, max_history))
                split["target"].append(int(seq[p]))
                split["known_items"].append(sorted(set(before.tolist())))
                break
    return pd.Series(warm_seqs, index=seqs.index), split


def _temporal(df: pd.DataFrame, cfg: PrepareConfig) -> tuple[dict, dict, dict, dict[str, Any]]:
    """Global cut-offs: interactions after the (1 - test_fraction) time quantile are test examples, and so on.

    Every valid/test interaction is one example whose history is all of the user's earlier interactions.
    """
    t_valid, t_test = np.quantile(
        df["timestamp"].to_numpy(), [1 - cfg.valid_fraction - cfg.test_fraction, 1 - cfg.test_fraction]
    )
    train = {"user_id": [], "item_ids": []}
    valid = {k: [] for k in ("user_id", "history", "target", "known_items")}
    test = {k: [] for k in ("user_id", "history", "target", "known_items")}
    no_history = 0
    for user, group in df.groupby("user_id", sort=False):
        items, ts = group["item_index"].to_numpy(), group["timestamp"].to_numpy()
        n_train = int((ts < t_valid).sum())
        if n_train >= 2:
            train["user_id"].append(user)
            train["item_ids"].append(items[:n_train].tolist())
        for pos in range(n_train, len(items)):
            if pos == 0:
                no_history += 1
                continue
            split = valid if ts[pos] < t_test else test
            target = int(items[pos])
            split["user_id"].append(user)
            split["history"].append(_tail(items[:pos], cfg.max_history))
            split["target"].append(target)
            split["known_items"].append(sorted(set(items[:pos].tolist()) - {target}))
    info = {
        "valid_from_timestamp": int(t_valid),
        "test_from_timestamp": int(t_test),
        "examples_without_history": no_history,
    }
    return train, valid, test, info


def source_key(
    dataset: str, data_dir: str | os.PathLike | None = None, category: str | None = None, **files: Any
) -> dict:
    """What the raw files were read from, as ``stats.json`` records it (``source``). ``files`` are the generic
    reader's arguments (``interactions_path``, ``items_path``, ``columns``, ``item_text_fields``); paths are kept
    absolute so that a run from another folder finds the same source."""
    key = {"dataset": dataset, "data_dir": None if data_dir is None else str(data_dir), "category": category}
    for name, value in files.items():
        if value is not None:
            key[name] = os.path.abspath(value) if name.endswith("_path") else value
    return key


def current_stats(output_dir: str | os.PathLike, cfg: PrepareConfig, source: dict) -> dict | None:
    """The stats of the prepared data in ``output_dir`` if it is current — prepared with this configuration from this
    source — else None. The one rule, for ``recpipe data prepare`` and for training alike."""
    path = Path(output_dir) / "stats.json"
    if not path.is_file():
        return None
    stats = json.loads(path.read_text())
    return stats if stats.get("config") == asdict(cfg) and stats.get("source") == source else None


def prepare(
    tables: SourceTables,
    cfg: PrepareConfig,
    output_dir: str | os.PathLike | None = None,
    source: dict | None = None,
):
    """Filter, order, split and render ``tables``; save to ``output_dir`` (with ``stats.json``) when given.
    ``source`` (see ``source_key``) is recorded in the stats: ``current_stats`` compares it.

    Returns:
        ``(DatasetDict, stats)``.
    """
    start = time.perf_counter()
    df = tables.interactions.to_pandas()
    items = tables.items.to_pandas()
    stats: dict[str, Any] = {
        "dataset": tables.name,
        "raw": {
            "users": int(df["user_id"].nunique()),
            "items": int(len(items)),
            "items_with_interactions": int(df["item_id"].nunique()),
            "interactions": int(len(df)),
        },
        "skipped_records": dict(tables.skipped),
        "filtered_out": {},
    }
    if df.empty:
        raise DataFormatError(tables.name, None, "no interactions to prepare")
    template = item_template(cfg.template, list(items.columns))
    text_columns = [key for _, key, _ in template]
    if len(items.columns) > 1 and not set(text_columns) & set(items.columns):
        # an items file was given, but the template would render every item as an empty string
        raise DataFormatError(
            tables.items_path or tables.name,
            None,
            f"no item text: the {cfg.template!r} template reads the columns {text_columns}, and the items have "
            f"{list(items.columns)}. Rename the item text column to one of {text_columns} (or pick --template)",
        )
    df["row"] = np.arange(len(df))

    dup = df.duplicated(["user_id", "item_id", "timestamp"], keep="first")
    stats["filtered_out"]["duplicate_interactions"] = int(dup.sum())
    df = df[~dup]

    known = df["item_id"].isin(items["item_id"])
    if not known.all():
        missing = df.loc[~known, "item_id"]
        if cfg.on_bad_record == "error":
            raise DataFormatError(
                tables.name,
                None,
                f"{len(missing)} interactions refer to {missing.nunique()} items without metadata "
                f"(e.g. {missing.unique()[:5].tolist()}); pass on_bad_record='skip' to drop and count them",
            )
        stats["filtered_out"]["no_item_metadata"] = int(len(missing))
        df = df[known]

    if cfg.rating_threshold is not None:
        low = df["rating"] < cfg.rating_threshold
        stats["filtered_out"]["below_rating_threshold"] = int(low.sum())
        df = df[~low]

    before = len(df)
    df = k_core(df, cfg.min_user_interactions, cfg.min_item_interactions)
    stats["filtered_out"]["k_core"] = before - len(df)
    if df.empty:
        raise DataFormatError(
            tables.name,
            None,
            f"the {cfg.min_user_interactions}/{cfg.min_item_interactions}-core filter leaves no interactions "
            f"(from {before}); lower min_user_interactions / min_item_interactions",
        )

    # The catalogue keeps the metadata file's order; index 0 is reserved for padding.
    catalogue = items[items["item_id"].isin(df["item_id"].unique())].drop_duplicates("item_id")
    catalogue = catalogue.reset_index(drop=True)
    index_of = pd.Series(np.arange(1, len(catalogue) + 1), index=catalogue["item_id"])
    df = df.assign(item_index=df["item_id"].map(index_of).to_numpy())
    df = df.sort_values(["user_id", "timestamp", "row"], kind="stable")

    if cfg.split == "leave_one_out":
        grouped = df.groupby("user_id", sort=False)["item_index"]
        seqs = grouped.agg(lambda s: s.to_numpy())
        cold_split = None
        if cfg.cold_item_fraction > 0:
            rng = np.random.default_rng(cfg.cold_seed)
            n_cold = max(1, int(round(cfg.cold_item_fraction * len(catalogue))))
            cold = np.sort(rng.choice(np.arange(1, len(catalogue) + 1), size=n_cold, replace=False))
            seqs, cold_split = _cold_start(seqs, pd.Series(seqs.index), cold, cfg.max_history)
        train, valid, test, too_short = _leave_one_out(seqs, pd.Series(seqs.index), cfg.max_history)
        split_info = {"users_with_fewer_than_3_interactions": too_short}
        if cold_split is not None:
            split_info.update(cold_items=int(n_cold), test_cold_examples=len(cold_split["user_id"]))
    else:
        cold_split = None
        train, valid, test, split_info = _temporal(df, cfg)

    records = items.to_dict("records")
    texts = {r["item_id"]: render_item_text(r, template) for r in records}
    cat_records = catalogue.to_dict("records")
    empty_text = sum(1 for r in cat_records if not texts[r["item_id"]])
    item_table = {
        "item_index": list(range(1, len(catalogue) + 1)),
        "item_id": catalogue["item_id"].tolist(),
        "title": [str(r.get("title") or "") for r in cat_records],
        "text": [texts[r["item_id"]] for r in cat_records],
    }
    pretrain = {"item_id": [i for i, t in texts.items() if t], "text": [t for t in texts.values() if t]}

    seq_feature = datasets.Sequence(datasets.Value("int32"))
    eval_features = datasets.Features(
        {
            "user_id": datasets.Value("string"),
            "history": seq_feature,
            "target": datasets.Value("int32"),
            "known_items": seq_feature,
        }
    )
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                train, features=datasets.Features({"user_id": datasets.Value("string"), "item_ids": seq_feature})
            ),
            "valid": datasets.Dataset.from_dict(valid, features=eval_features),
            "test": datasets.Dataset.from_dict(test, features=eval_features),
            **({"test_cold": datasets.Dataset.from_dict(cold_split, features=eval_features)} if cold_split else {}),
            "items": datasets.Dataset.from_dict(item_table, features=ITEM_TABLE_FEATURES),
            # typed, so that an empty corpus (no item has text) saves and loads
            "pretrain": datasets.Dataset.from_dict(pretrain, features=PRETRAIN_FEATURES),
        }
    )
    stats["filtered"] = {
        "users": int(df["user_id"].nunique()),
        "items": int(len(catalogue)),
        "interactions": int(len(df)),
        "density": float(len(df) / max(1, df["user_id"].nunique() * len(catalogue))),
        "items_without_text": empty_text,
    }
    stats["splits"] = {
        "train_users": len(train["user_id"]),
        "train_interactions": int(sum(len(s) for s in train["item_ids"])),
        "valid_examples": len(valid["user_id"]),
        "test_examples": len(test["user_id"]),
        "pretrain_texts": len(pretrain["text"]),
        **split_info,
    }
    stats["tie_break"] = TIE_BREAK
    stats["config"] = asdict(cfg)
    stats["source"] = source
    stats["seconds"] = round(time.perf_counter() - start, 3)
    if empty_text:
        logger.warning("%d catalogue items have no text; text-based models see an empty string for them", empty_text)
    if output_dir is not None:
        save_prepared(dd, stats, output_dir)
    return dd, stats


def save_prepared(dd: datasets.DatasetDict, stats: dict, output_dir: str | os.PathLike) -> None:
    """Write the dataset and its stats to a temporary folder, then put it in place of ``output_dir`` (whose earlier
    prepared dataset it replaces; a folder holding anything else is never replaced)."""
    output_dir = Path(output_dir)
    marks = ("stats.json", "dataset_dict.json")  # a prepared dataset, or one a killed older recpipe left half-written
    if output_dir.is_dir() and any(output_dir.iterdir()) and not any((output_dir / m).is_file() for m in marks):
        raise InvalidInputError(
            f"{output_dir} holds files that are not a prepared dataset; prepare into a new or empty folder"
        )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # datasets saves an empty split but cannot load it back (IndexError): empty splits are recorded, not saved
    empty = {name: split.features.to_dict() for name, split in dd.items() if len(split) == 0}
    with atomic_path(output_dir) as tmp:
        datasets.DatasetDict({name: split for name, split in dd.items() if name not in empty}).save_to_disk(str(tmp))
        (tmp / EMPTY_SPLITS).write_text(json.dumps(empty, indent=2))
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2))


@contextlib.contextmanager
def prepare_lock(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the lock for preparing ``output_dir`` from checking ``current_stats`` to the end of ``prepare``: a second
    process waits, then finds the data current. Taking it removes what killed preparations left. The lock file sits
    beside the folder, which ``save_prepared`` replaces."""
    output_dir = Path(output_dir).absolute()
    with file_lock(output_dir.parent / f".{output_dir.name}.lock"):
        remove_leftovers(output_dir.parent, output_dir.name)
        yield


def load_prepared(path: str | os.PathLike) -> tuple[datasets.DatasetDict, dict]:
    """Load a prepared ``DatasetDict`` and its stats; the message says how to make one when it is missing."""
    path = Path(path)
    if not (path / "stats.json").is_file():
        raise MissingInputError(
            f"{path} holds no prepared dataset; run `recpipe data prepare --dataset NAME --output-dir {path}`"
        )
    dd = datasets.load_from_disk(str(path))
    if (path / EMPTY_SPLITS).is_file():
        for name, features in json.loads((path / EMPTY_SPLITS).read_text()).items():
            features = datasets.Features.from_dict(features)
            dd[name] = datasets.Dataset.from_dict({column: [] for column in features}, features=features)
    return dd, json.loads((path / "stats.json").read_text())
