"""Pointwise preference (CTR) data under the TALLRec protocol: "will this user like this item?".

Each example is one rated interaction: the user's latest ``history_len`` earlier interactions (titles and
like/dislike marks, oldest first), the candidate item, and the label ``rating > like_threshold``. Steps, in order
(each one's effect is counted in the stats):

1. check the ratings: the task needs explicit feedback, so a missing, null or constant rating column (what an
   implicit-feedback reader produces) is a ``ValueError``;
2. drop exact duplicate interactions (same user, item and timestamp): one would sit in the other's history and
   give its label away;
3. drop interactions whose item has no metadata (absent from the items table, or an empty title);
4. order each user's interactions by timestamp with a stable sort, so tied timestamps keep the input row order;
5. one example per interaction with at least ``min_history`` earlier interactions; its history holds only
   interactions strictly before it in the user's order, never the candidate interaction itself;
6. split all examples chronologically (global order: timestamp, then input row) into train/valid/test by
   ``split_ratios``. This order agrees with every user's own order, so a user's training examples all come
   before their valid and test examples;
7. few-shot (``train_shots``): keep a seeded random sample of the training examples; valid and test are unchanged.

Columns of every split: ``user_id``, ``item_id``, ``history_item_ids``, ``history_titles``, ``history_liked``,
``candidate_title``, ``candidate_text`` (the item rendered with a template of :mod:`recpipe.data.templates`),
``label`` (0/1) and ``timestamp``. Titles are kept as the items table spells them; prompt code decides how to
present them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa

from recpipe.data.schema import SourceTables
from recpipe.data.templates import TEMPLATE_NAMES, item_template, render_item_text
from recpipe.errors import InvalidInputError

CTR_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "item_id": datasets.Value("string"),
        "history_item_ids": datasets.List(datasets.Value("string")),
        "history_titles": datasets.List(datasets.Value("string")),
        "history_liked": datasets.List(datasets.Value("bool")),
        "candidate_title": datasets.Value("string"),
        "candidate_text": datasets.Value("string"),
        "label": datasets.Value("int64"),
        "timestamp": datasets.Value("int64"),
    }
)

TIE_BREAK = "stable sort on timestamp; equal timestamps keep the input row order (per user and across the split)"


@dataclass
class CTRConfig:
    """How rated interactions become "will this user like this item?" examples (TALLRec protocol)."""

    like_threshold: float = field(
        default=3.0,
        metadata={"help": "Label 1 (like) when rating > this: MovieLens > 3, i.e. >= 4 for integer stars."},
    )
    history_len: int = field(
        default=10, metadata={"help": "The history holds the user's latest this many earlier interactions."}
    )
    min_history: int = field(
        default=10, metadata={"help": "Skip (and count) interactions with fewer earlier interactions than this."}
    )
    split_ratios: tuple[float, float, float] = field(
        default=(0.8, 0.1, 0.1),
        metadata={"help": "Shares of train/valid/test in a global chronological split of all examples."},
    )
    train_shots: int | None = field(
        default=None, metadata={"help": "Few-shot: keep only this many training examples; None keeps all."}
    )
    shot_seed: int = field(default=0, metadata={"help": "Seed of the few-shot sample."})
    template: str = field(
        default="movielens", metadata={"help": f"Template of candidate_text: {list(TEMPLATE_NAMES)}."}
    )

    def __post_init__(self):
        self.split_ratios = tuple(float(r) for r in self.split_ratios)
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or self.split_ratios[0] <= 0:
            raise InvalidInputError(f"split_ratios must be 3 shares (train > 0, others >= 0), got {self.split_ratios}")
        if abs(sum(self.split_ratios) - 1) > 1e-6:
            raise InvalidInputError(f"split_ratios must sum to 1, got {self.split_ratios}")
        if self.history_len < 1 or self.min_history < 0:
            raise InvalidInputError("history_len must be >= 1 and min_history >= 0")
        if self.train_shots is not None and self.train_shots < 1:
            raise InvalidInputError(f"train_shots must be >= 1 or None, got {self.train_shots}")
        if self.template not in TEMPLATE_NAMES:
            raise InvalidInputError(f"unknown template {self.template!r}; choose one of {list(TEMPLATE_NAMES)}")


def _check_ratings(df: pd.DataFrame, name: str) -> None:
    if "rating" not in df.columns:
        raise InvalidInputError(f"{name}: the interactions have no rating column; the CTR task needs explicit ratings")
    missing = df["rating"].isna()
    if missing.any():
        row = int(missing.to_numpy().argmax())
        raise InvalidInputError(
            f"{name}: {int(missing.sum())} interactions have no rating (first at row {row}); "
            "the CTR task needs explicit ratings"
        )
    if df["rating"].nunique() == 1:
        raise InvalidInputError(
            f"{name}: every rating is {df['rating'].iloc[0]}, which looks like implicit feedback (read_generic "
            "sets 1.0 when the file has no rating column); the CTR task needs explicit ratings"
        )


def _title_text(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if hasattr(value, "tolist"):  # numpy arrays from pandas
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return ", ".join(t for t in (_title_text(v) for v in value) if t)
    return str(value)


def _few_shot(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``shots`` training examples: the first ``shots`` of a seeded permutation. When that
    misses a class and ``shots >= 2``, its last pick is swapped for the earliest example of the missing class in
    the same permutation, so the sample is deterministic and holds both classes."""
    if shots > len(labels):
        raise InvalidInputError(f"train_shots={shots} exceeds the {len(labels)} training examples")
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = order[:shots].copy()
    if shots >= 2:
        if len(np.unique(labels)) < 2:
            raise InvalidInputError(
                f"the training examples hold one class only (label {labels[0]}); few-shot needs both"
            )
        present = np.unique(labels[chosen])
        if len(present) == 1:
            missing_class = 1 - present[0]
            chosen[-1] = order[np.flatnonzero(labels[order] == missing_class)[0]]
    return np.sort(chosen)


def _build_split(frame: dict[str, np.ndarray], examples: np.ndarray, history_len: int) -> datasets.Dataset:
    """One split from ``examples`` (row numbers of ``frame``, whose rows are sorted by user, then time)."""
    n_hist = np.minimum(frame["position"][examples], history_len)
    start = examples - n_hist  # a user's earlier interactions are the rows just above the candidate
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    np.cumsum(n_hist, out=offsets[1:])
    rows = np.repeat(start, n_hist) + np.arange(offsets[-1]) - np.repeat(offsets[:-1], n_hist)
    table = pa.table(
        {
            "user_id": pa.array(frame["user_id"][examples], pa.string()),
            "item_id": pa.array(frame["item_id"][examples], pa.string()),
            "history_item_ids": pa.ListArray.from_arrays(offsets, pa.array(frame["item_id"][rows], pa.string())),
            "history_titles": pa.ListArray.from_arrays(offsets, pa.array(frame["title"][rows], pa.string())),
            "history_liked": pa.ListArray.from_arrays(offsets, pa.array(frame["liked"][rows], pa.bool_())),
            "candidate_title": pa.array(frame["title"][examples], pa.string()),
            "candidate_text": pa.array(frame["text"][examples], pa.string()),
            "label": pa.array(frame["liked"][examples].astype(np.int64), pa.int64()),
            "timestamp": pa.array(frame["timestamp"][examples], pa.int64()),
        }
    )
    return datasets.Dataset(table.cast(CTR_FEATURES.arrow_schema))


def build_ctr_examples(tables: SourceTables, config: CTRConfig) -> tuple[datasets.DatasetDict, dict]:
    """Turn rated interactions into train/valid/test examples for "will this user like this item?".

    Args:
        tables ([`SourceTables`]):
            Canonical interactions (`user_id`, `item_id`, `timestamp`, `rating`) and items (`item_id`, `title`
            and the text fields of `config.template`).
        config ([`CTRConfig`]):
            The label threshold, history length, split shares and few-shot sample.

    Returns:
        `tuple[datasets.DatasetDict, dict]`: the `train`, `valid` and `test` splits (columns of `CTR_FEATURES`,
        each in chronological order) and the stats: examples and positive rate per split, users, what was
        skipped and why, the split's first timestamps, the tie-break and the config.

    Raises:
        `ValueError`: ratings missing, null or constant (implicit feedback); an items table without `title`; no
            examples left; `train_shots` above the training examples, or a one-class training set for
            `train_shots >= 2`.
    """
    start_time = time.perf_counter()
    df = tables.interactions.to_pandas()
    if df.empty:
        raise InvalidInputError(f"{tables.name}: no interactions")
    _check_ratings(df, tables.name)
    if "title" not in tables.items.column_names:
        raise InvalidInputError(
            f"{tables.name}: the items table has no title column (has {tables.items.column_names})"
        )
    skipped: dict[str, int] = {}
    users_input = int(df["user_id"].nunique())
    df["row"] = np.arange(len(df))

    dup = df.duplicated(["user_id", "item_id", "timestamp"], keep="first")
    skipped["duplicate_interactions"] = int(dup.sum())
    df = df[~dup]

    items = tables.items.to_pandas().drop_duplicates("item_id")
    items = items[items["item_id"].isin(df["item_id"].unique())]
    template = item_template(config.template, list(items.columns))
    titles = {r["item_id"]: _title_text(r["title"]) for r in items.to_dict("records")}
    texts = {r["item_id"]: render_item_text(r, template) for r in items.to_dict("records")}
    known = df["item_id"].map(titles).fillna("").astype(bool)
    skipped["no_item_metadata"] = int((~known).sum())
    df = df[known]

    df = df.sort_values(["user_id", "timestamp", "row"], kind="stable").reset_index(drop=True)
    frame = {
        "user_id": df["user_id"].to_numpy(dtype=object),
        "item_id": df["item_id"].to_numpy(dtype=object),
        "title": df["item_id"].map(titles).to_numpy(dtype=object),
        "text": df["item_id"].map(texts).to_numpy(dtype=object),
        "liked": (df["rating"] > config.like_threshold).to_numpy(),
        "timestamp": df["timestamp"].to_numpy(dtype=np.int64),
        "row": df["row"].to_numpy(),
        "position": df.groupby("user_id", sort=False).cumcount().to_numpy(),
    }
    eligible = np.flatnonzero(frame["position"] >= config.min_history)
    skipped["short_history"] = int(len(df) - len(eligible))
    if len(eligible) == 0:
        raise InvalidInputError(
            f"{tables.name}: no interaction has {config.min_history} earlier ones (from {len(df)}); lower min_history"
        )
    # Global chronological order; among equal timestamps, the input row order (which agrees with each user's order).
    examples = eligible[np.lexsort((frame["row"][eligible], frame["timestamp"][eligible]))]
    cuts = np.round(np.cumsum(config.split_ratios)[:2] * len(examples)).astype(int)
    parts = dict(zip(("train", "valid", "test"), np.split(examples, cuts)))
    train_examples_before_shots = len(parts["train"])
    if config.train_shots is not None:
        keep = _few_shot(frame["liked"][parts["train"]].astype(np.int64), config.train_shots, config.shot_seed)
        parts["train"] = parts["train"][keep]

    dd = datasets.DatasetDict({name: _build_split(frame, ex, config.history_len) for name, ex in parts.items()})
    stats = {
        "dataset": tables.name,
        "examples": {name: len(ex) for name, ex in parts.items()},
        "positive_rate": {
            name: round(float(frame["liked"][ex].mean()), 4) if len(ex) else None for name, ex in parts.items()
        },
        "users": {
            "input": users_input,
            "with_examples": int(len(np.unique(frame["user_id"][examples]))),
            **{name: int(len(np.unique(frame["user_id"][ex]))) for name, ex in parts.items()},
        },
        "interactions": {"input": len(tables.interactions), "kept": int(len(df))},
        "skipped": {**skipped, "source_records": dict(tables.skipped)},
        "train_examples_before_shots": train_examples_before_shots,
        "split_from_timestamp": {
            name: int(frame["timestamp"][ex[0]]) if len(ex) else None for name, ex in parts.items() if name != "train"
        },
        "tie_break": TIE_BREAK,
        "config": asdict(config),
        "seconds": round(time.perf_counter() - start_time, 3),
    }
    return dd, stats
