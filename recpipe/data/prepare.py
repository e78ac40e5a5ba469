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
import hashlib
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
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.atomic_files import atomic_path, file_lock, remove_leftovers
from recpipe.data.schema import DataFormatError, SourceTables
from recpipe.data.segments import segments, sorted_sets, tails
from recpipe.data.templates import TEMPLATE_NAMES, item_template, render_item_texts
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


def k_core(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Iteratively drop users and items with too few interactions until both conditions hold; returns the kept
    positions of the (user code, item code) arrays."""
    kept = np.arange(len(users))
    while True:
        u, i = users[kept], items[kept]
        keep = (np.bincount(u)[u] >= min_user) & (np.bincount(i)[i] >= min_item)
        if keep.all():
            return kept
        kept = kept[keep]


@dataclass
class Sequences:
    """Every user's interactions in chronological order, as one flat array cut into segments (users in sorted id
    order): user k's item indices are ``items[starts[k]:ends[k]]``."""

    users: list[str]
    items: np.ndarray
    timestamps: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


EVAL_FIELDS = ("user_id", "history", "target", "known_items")


def _split(seqs: Sequences, owners, starts, ends, targets, max_history: int, values=None, drop_target=True) -> dict:
    """Examples whose target is ``targets[j]`` and whose input is ``values[starts[j]:ends[j]]`` (default: the
    users' sequences): the last ``max_history`` items as history, the sorted distinct items (less the target) as
    the known items."""
    values = seqs.items if values is None else values
    drop = targets if drop_target else np.full(len(targets), -1)
    return {
        "user_id": [seqs.users[k] for k in owners.tolist()],
        "history": tails(values, starts, ends, max_history),
        "target": targets,
        "known_items": sorted_sets(values, starts, ends, drop),
    }


def _leave_one_out(seqs: Sequences, max_history: int) -> tuple[dict, dict, dict, int]:
    lengths = seqs.ends - seqs.starts
    owners = np.flatnonzero(lengths >= 3)
    starts, ends = seqs.starts[owners], seqs.ends[owners]
    train = {"user_id": [seqs.users[k] for k in owners.tolist()], "item_ids": segments(seqs.items, starts, ends - 2)}
    valid = _split(seqs, owners, starts, ends - 2, seqs.items[ends - 2], max_history)
    test = _split(seqs, owners, starts, ends - 1, seqs.items[ends - 1], max_history)
    return train, valid, test, int(len(lengths) - len(owners))


def _cold_start(seqs: Sequences, cold: np.ndarray, max_history: int) -> tuple[Sequences, dict]:
    """Take cold items out of every sequence; each user's last cold item (after at least one warm one) becomes a
    ``test_cold`` example whose history is the warm items before it. Returns the warm sequences and the split."""
    is_cold = np.isin(seqs.items, cold)
    warm = ~is_cold
    lengths = seqs.ends - seqs.starts
    owner = np.repeat(np.arange(len(lengths)), lengths)
    warm_so_far = np.cumsum(warm) - warm  # warm items before each position...
    warm_before = warm_so_far - warm_so_far[np.repeat(seqs.starts, lengths)]  # ...in its user's sequence
    warm_lengths = np.bincount(owner[warm], minlength=len(lengths))
    warm_starts = np.cumsum(warm_lengths) - warm_lengths
    candidate = np.flatnonzero(is_cold & (warm_before > 0))
    last = candidate[np.append(owner[candidate][1:] != owner[candidate][:-1], True)] if len(candidate) else candidate
    users, warm_items = owner[last], seqs.items[warm]
    starts = warm_starts[users]
    split = _split(
        seqs, users, starts, starts + warm_before[last], seqs.items[last], max_history, warm_items, drop_target=False
    )
    return Sequences(seqs.users, warm_items, seqs.timestamps[warm], warm_starts, warm_starts + warm_lengths), split


def _temporal(seqs: Sequences, cfg: PrepareConfig) -> tuple[dict, dict, dict, dict[str, Any]]:
    """Global cut-offs: interactions after the (1 - test_fraction) time quantile are test examples, and so on.

    Every valid/test interaction is one example whose history is all of the user's earlier interactions.
    """
    t_valid, t_test = np.quantile(seqs.timestamps, [1 - cfg.valid_fraction - cfg.test_fraction, 1 - cfg.test_fraction])
    lengths = seqs.ends - seqs.starts
    owner = np.repeat(np.arange(len(lengths)), lengths)
    before_valid = seqs.timestamps < t_valid  # a prefix of each user's chronological sequence
    n_train = np.bincount(owner[before_valid], minlength=len(lengths))
    trained = np.flatnonzero(n_train >= 2)
    train = {
        "user_id": [seqs.users[k] for k in trained.tolist()],
        "item_ids": segments(seqs.items, seqs.starts[trained], seqs.starts[trained] + n_train[trained]),
    }
    later = np.flatnonzero(~before_valid)
    first = later == seqs.starts[owner[later]]
    later = later[~first]
    is_test = seqs.timestamps[later] >= t_test
    valid, test = (
        _split(seqs, owner[p], seqs.starts[owner[p]], p, seqs.items[p], cfg.max_history)
        for p in (later[~is_test], later[is_test])
    )
    info = {
        "valid_from_timestamp": int(t_valid),
        "test_from_timestamp": int(t_test),
        "examples_without_history": int(first.sum()),
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
    interactions = tables.interactions.with_format("arrow")[:]
    items = tables.items.with_format("arrow")[:]
    # Integer codes instead of strings (one hash pass a column): users numbered in sorted id order (the order of
    # the splits), items in order of first appearance.
    user, user_names = _codes(interactions["user_id"])
    user_rank = np.empty(len(user_names), dtype=np.int64)
    user_rank[pc.array_sort_indices(user_names).to_numpy()] = np.arange(len(user_names))
    user, user_names = user_rank[user], user_names.take(pc.array_sort_indices(user_names))
    item, item_names = _codes(interactions["item_id"])
    timestamp = interactions["timestamp"].to_numpy()
    rating = interactions["rating"].to_numpy()
    stats: dict[str, Any] = {
        "dataset": tables.name,
        "raw": {
            "users": len(user_names),
            "items": items.num_rows,
            "items_with_interactions": len(item_names),
            "interactions": interactions.num_rows,
        },
        "skipped_records": dict(tables.skipped),
        "filtered_out": {},
    }
    if interactions.num_rows == 0:
        raise DataFormatError(tables.name, None, "no interactions to prepare")
    template = item_template(cfg.template, list(items.column_names))
    text_columns = [key for _, key, _ in template]
    if items.num_columns > 1 and not set(text_columns) & set(items.column_names):
        # an items file was given, but the template would render every item as an empty string
        raise DataFormatError(
            tables.items_path or tables.name,
            None,
            f"no item text: the {cfg.template!r} template reads the columns {text_columns}, and the items have "
            f"{list(items.column_names)}. Rename the item text column to one of {text_columns} (or pick --template)",
        )

    # Every step below keeps this order: chronological per user, equal timestamps in file order (a stable sort).
    order = _chronological(user, timestamp)

    # 1. exact duplicates (same user, item and timestamp) keep their first row; they sit among the ties of the order
    duplicate = _duplicates(order, user, item, timestamp)
    stats["filtered_out"]["duplicate_interactions"] = int(duplicate.sum())
    kept = order[~duplicate[order]]
    del duplicate, order

    # 2. items without metadata
    has_metadata = pc.is_in(item_names, value_set=items["item_id"]).to_numpy(zero_copy_only=False)
    known = has_metadata[item[kept]]
    if not known.all():
        missing = item[np.sort(kept[~known])]  # in file order, for the message
        if cfg.on_bad_record == "error":
            first_seen = missing[np.sort(np.unique(missing, return_index=True)[1])]
            raise DataFormatError(
                tables.name,
                None,
                f"{len(missing)} interactions refer to {len(first_seen)} items without metadata "
                f"(e.g. {item_names.take(first_seen[:5]).to_pylist()}); pass on_bad_record='skip' to drop and count "
                "them",
            )
        stats["filtered_out"]["no_item_metadata"] = int(len(missing))
        kept = kept[known]

    # 3. implicit feedback
    if cfg.rating_threshold is not None:
        low = rating[kept] < cfg.rating_threshold
        stats["filtered_out"]["below_rating_threshold"] = int(low.sum())
        kept = kept[~low]

    # 4. k-core
    before = len(kept)
    kept = kept[k_core(user[kept], item[kept], cfg.min_user_interactions, cfg.min_item_interactions)]
    stats["filtered_out"]["k_core"] = before - len(kept)
    if len(kept) == 0:
        raise DataFormatError(
            tables.name,
            None,
            f"the {cfg.min_user_interactions}/{cfg.min_item_interactions}-core filter leaves no interactions "
            f"(from {before}); lower min_user_interactions / min_item_interactions",
        )

    # The catalogue keeps the metadata file's order (its first line of an item); index 0 is reserved for padding.
    in_use = np.zeros(len(item_names), dtype=bool)
    in_use[item[kept]] = True
    meta_ids = items["item_id"]
    meta_code = pc.fill_null(pc.index_in(meta_ids, value_set=item_names), -1).to_numpy().astype(np.int64)
    first_line = np.zeros(len(meta_code), dtype=bool)
    first_line[np.unique(meta_code, return_index=True)[1]] = True
    catalogue_rows = np.flatnonzero(first_line & (meta_code >= 0) & in_use[np.maximum(meta_code, 0)])
    item_index = np.zeros(len(item_names), dtype=np.int32)
    item_index[meta_code[catalogue_rows]] = np.arange(1, len(catalogue_rows) + 1)

    # 5. each user's sequence (``kept`` is in chronological order)
    counts = np.bincount(user[kept], minlength=len(user_names))
    present = np.flatnonzero(counts)
    ends = np.cumsum(counts[present])
    seqs = Sequences(
        users=user_names.take(present).to_pylist(),
        items=item_index[item[kept]],
        timestamps=timestamp[kept],
        starts=ends - counts[present],
        ends=ends,
    )
    del user, item, timestamp, rating

    # 6. splits
    if cfg.split == "leave_one_out":
        cold_split = None
        if cfg.cold_item_fraction > 0:
            rng = np.random.default_rng(cfg.cold_seed)
            n_cold = max(1, int(round(cfg.cold_item_fraction * len(catalogue_rows))))
            cold = np.sort(rng.choice(np.arange(1, len(catalogue_rows) + 1), size=n_cold, replace=False))
            seqs, cold_split = _cold_start(seqs, cold, cfg.max_history)
        train, valid, test, too_short = _leave_one_out(seqs, cfg.max_history)
        split_info = {"users_with_fewer_than_3_interactions": too_short}
        if cold_split is not None:
            split_info.update(cold_items=int(n_cold), test_cold_examples=len(cold_split["user_id"]))
    else:
        cold_split = None
        train, valid, test, split_info = _temporal(seqs, cfg)

    # 7. item text: one per item id, the last row's (the metadata files repeat a few), in order of first rows
    texts = render_item_texts(items, template)
    text_codes, text_ids = _codes(items["item_id"])
    if len(text_ids) < len(text_codes):
        last_row = np.zeros(len(text_ids), dtype=np.int64)
        np.maximum.at(last_row, text_codes, np.arange(len(text_codes)))
        texts = texts.take(last_row)  # row k: item id text_ids[k]
    # (copies of a million texts are a third of a gigabyte each: made only where rows are left out)
    everything = len(catalogue_rows) == len(text_codes) == len(text_ids)
    catalogue_text = texts if everything else texts.take(text_codes[catalogue_rows])
    titles = items.column("title").take(catalogue_rows) if "title" in items.column_names else None
    if titles is None or not pa.types.is_string(titles.type):
        titles = pa.array(
            [str(t or "") for t in (titles.to_pylist() if titles is not None else [None] * len(catalogue_rows))]
        )
    item_table = {
        "item_index": pa.array(np.arange(1, len(catalogue_rows) + 1)),
        "item_id": items.column("item_id").take(catalogue_rows),
        "title": pc.fill_null(titles, ""),
        "text": catalogue_text,
    }
    empty_text = int(pc.sum(pc.equal(catalogue_text, "")).as_py() or 0)
    has_text = pc.not_equal(texts, "")
    if not pc.all(has_text).as_py():
        text_ids, texts = text_ids.filter(has_text), texts.filter(has_text)
    pretrain = {"item_id": text_ids, "text": texts}
    n_users, n_interactions, n_catalogue = len(present), len(kept), len(catalogue_rows)

    seq_feature = datasets.Sequence(datasets.Value("int32"))
    eval_features = datasets.Features(
        {
            "user_id": datasets.Value("string"),
            "history": seq_feature,
            "target": datasets.Value("int32"),
            "known_items": seq_feature,
        }
    )
    train_features = datasets.Features({"user_id": datasets.Value("string"), "item_ids": seq_feature})
    # Fingerprints from what the splits are made of (the inputs' fingerprints and the configuration): left to
    # itself, ``datasets`` would hash every table by pickling it, a transient copy of a gigabyte at Amazon scale.
    inputs = [getattr(t, "_fingerprint", None) for t in (tables.interactions, tables.items)]
    fingerprint = hashlib.sha256(json.dumps([inputs, asdict(cfg)], sort_keys=True).encode()).hexdigest()[:16]
    splits = {
        "train": (train, train_features),
        "valid": (valid, eval_features),
        "test": (test, eval_features),
        **({"test_cold": (cold_split, eval_features)} if cold_split else {}),
        "items": (item_table, ITEM_TABLE_FEATURES),
        # typed, so that an empty corpus (no item has text) saves and loads
        "pretrain": (pretrain, PRETRAIN_FEATURES),
    }
    dd = datasets.DatasetDict(
        {name: _dataset(columns, features, f"{fingerprint}-{name}") for name, (columns, features) in splits.items()}
    )
    stats["filtered"] = {
        "users": n_users,
        "items": n_catalogue,
        "interactions": n_interactions,
        "density": float(n_interactions / max(1, n_users * n_catalogue)),
        "items_without_text": empty_text,
    }
    stats["splits"] = {
        "train_users": len(train["user_id"]),
        "train_interactions": len(train["item_ids"].values),
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


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of a column's values (in order of first appearance) and the values themselves."""
    encoded = pc.dictionary_encode(column)
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int64), pa.array([], column.type)
    # one dictionary for every chunk of a chunked column: the last chunk's holds all values
    codes = np.concatenate([chunk.indices.to_numpy() for chunk in encoded.chunks]).astype(np.int64)
    return codes, encoded.chunks[-1].dictionary


def _chronological(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Row positions by user, then timestamp, then row (stable): one sort of one integer key where it fits."""
    if len(user) == 0:
        return np.zeros(0, dtype=np.int64)
    low, span = int(timestamp.min()), int(timestamp.max()) - int(timestamp.min()) + 1
    if (int(user.max()) + 1) * span < 2**62:
        return np.argsort(user * span + (timestamp - low), kind="stable")
    return np.lexsort((timestamp, user))


def _duplicates(order: np.ndarray, user: np.ndarray, item: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Rows that repeat an earlier row's (user, item, timestamp), given the chronological ``order``: such rows lie
    in runs of equal (user, timestamp), where the items are compared."""
    same = (np.diff(user[order]) == 0) & (np.diff(timestamp[order]) == 0)
    in_run = np.zeros(len(order), dtype=bool)
    in_run[:-1] |= same
    in_run[1:] |= same
    rows = order[in_run]  # by (user, timestamp, row)
    rows = rows[np.lexsort((rows, item[rows], timestamp[rows], user[rows]))]
    repeat = (np.diff(user[rows]) == 0) & (np.diff(timestamp[rows]) == 0) & (np.diff(item[rows]) == 0)
    duplicate = np.zeros(len(user), dtype=bool)
    duplicate[rows[1:][repeat]] = True
    return duplicate


def _dataset(columns: dict, features: datasets.Features | None, fingerprint: str) -> datasets.Dataset:
    """A ``Dataset`` straight from Arrow columns (``Dataset.from_dict`` would encode every row in Python)."""
    arrays = [pa.array(column) if isinstance(column, list) else column for column in columns.values()]
    table = pa.Table.from_arrays(arrays, names=list(columns))
    if features is not None:
        table = table.cast(features.arrow_schema)
    return datasets.Dataset(table, fingerprint=fingerprint)


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
