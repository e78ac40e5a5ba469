"""Readers for the Amazon Reviews 2023 and 2018 dumps (reviews plus item metadata, JSON lines, optionally gzipped).

Both stream the files into memory-mapped Arrow tables (see :func:`recpipe.data.generic.build_dataset`), so a
category of tens of gigabytes is read with a small, constant amount of memory. Review texts are not kept: the item
text comes from the metadata file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recpipe.data.columnar import LineBlock, iter_line_blocks, optional_text, parse_block, required_text, text_list
from recpipe.data.generic import build_dataset, merge_counts, text_list_value, text_value
from recpipe.data.schema import (
    INTERACTION_FEATURES,
    MILLISECONDS_THRESHOLD,
    BadRecordPolicy,
    BadRecords,
    SourceTables,
    iter_json_lines,
    normalize_timestamp,
    parse_rating,
    require_text,
)
from recpipe.errors import InvalidInputError, MissingInputError

AMAZON_2023_URL = "https://amazon-reviews-2023.github.io/"
AMAZON_2018_URL = "https://nijianmo.github.io/amazon/"

INTERACTION_SCHEMA = INTERACTION_FEATURES.arrow_schema
_TEXT_LIST = datasets.List(datasets.Value("string"))
AMAZON_2023_ITEM_FEATURES = datasets.Features(
    {
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "store": datasets.Value("string"),
        "categories": _TEXT_LIST,
        "features": _TEXT_LIST,
        "description": _TEXT_LIST,
    }
)
AMAZON_2018_ITEM_FEATURES = datasets.Features(
    {
        "item_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "brand": datasets.Value("string"),
        "categories": _TEXT_LIST,
        "description": _TEXT_LIST,
    }
)

# (source field, item column, is a list, counts as item text)
_META_2023 = (
    ("title", "title", False, True),
    ("store", "store", False, False),
    ("categories", "categories", True, False),
    ("features", "features", True, True),
    ("description", "description", True, True),
)
_META_2018 = (
    ("title", "title", False, True),
    ("brand", "brand", False, False),
    ("category", "categories", True, False),
    ("description", "description", True, True),
)
# (user field, item field, rating field, timestamp field)
_REVIEWS_2023 = ("user_id", "parent_asin", "rating", "timestamp")
_REVIEWS_2018 = ("reviewerID", "asin", "overall", "unixReviewTime")


def read_amazon_2023(
    reviews_path: str | os.PathLike,
    meta_path: str | os.PathLike,
    on_bad_record: BadRecordPolicy = "error",
    cache_dir: str | os.PathLike | None = None,
) -> SourceTables:
    """Read one category of Amazon Reviews 2023 (`<Category>.jsonl[.gz]` and `meta_<Category>.jsonl[.gz]`).

    Args:
        reviews_path (`str` or `os.PathLike`):
            The reviews file; its `user_id`, `parent_asin`, `rating` and `timestamp` (milliseconds) are kept.
        meta_path (`str` or `os.PathLike`):
            The item metadata file; its `parent_asin`, `title`, `store`, `categories`, `features` and
            `description` are kept.
        on_bad_record (`str`, defaults to `"error"`):
            `"error"` raises a [`DataFormatError`] naming the file and line at the first bad record; `"skip"` skips
            bad records and counts them by kind (`invalid_json`, `non_utf8`, `missing_field`, `wrong_type`,
            `bad_rating`, `bad_timestamp`, `empty_item_text`). Repeated `parent_asin` lines in the metadata are
            never an error: the first is kept, the others are counted as `duplicate_item`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where the Arrow tables are cached; defaults to the `datasets` cache. A changed file is read again.

    Returns:
        [`SourceTables`]: interactions (`user_id`, `item_id` = `parent_asin`, `timestamp` in seconds, `rating`) in
        file order, and items (`item_id`, `title`, `store`, `categories`, `features`, `description`) where null
        becomes `""` or `[]` and a string where a list is expected becomes a one-element list. An item whose
        title, features and description are all empty is a bad record (`empty_item_text`).

    Raises:
        `FileNotFoundError`: a file does not exist.
        [`DataFormatError`]: a bad record under the `"error"` policy, a truncated gzip file, or no valid record.

    Example:

    ```py
    >>> reviews, meta = find_amazon_files("data/amazon", "All_Beauty")
    >>> tables = read_amazon_2023(reviews, meta, on_bad_record="skip")
    ```
    """
    return _read_amazon(reviews_path, meta_path, 2023, on_bad_record, cache_dir)


def read_amazon_2018(
    reviews_path: str | os.PathLike,
    meta_path: str | os.PathLike,
    on_bad_record: BadRecordPolicy = "error",
    cache_dir: str | os.PathLike | None = None,
) -> SourceTables:
    """Read one category of Amazon Reviews 2018 (`<Category>.json[.gz]` and `meta_<Category>.json[.gz]`, JSON lines).

    Args:
        reviews_path (`str` or `os.PathLike`):
            The reviews file; its `reviewerID`, `asin`, `overall` and `unixReviewTime` (seconds) are kept.
        meta_path (`str` or `os.PathLike`):
            The item metadata file; its `asin`, `title`, `brand`, `category` and `description` are kept.
        on_bad_record (`str`, defaults to `"error"`):
            As for [`read_amazon_2023`].
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where the Arrow tables are cached; defaults to the `datasets` cache. A changed file is read again.

    Returns:
        [`SourceTables`]: interactions (`user_id`, `item_id` = `asin`, `timestamp`, `rating`) in file order, and
        items (`item_id`, `title`, `brand`, `categories`, `description`), normalised as for
        [`read_amazon_2023`]; an item with an empty title and description is a bad record (`empty_item_text`).

    Raises:
        `FileNotFoundError`: a file does not exist.
        [`DataFormatError`]: a bad record under the `"error"` policy, a truncated gzip file, or no valid record.
    """
    return _read_amazon(reviews_path, meta_path, 2018, on_bad_record, cache_dir)


def _read_amazon(
    reviews_path: str | os.PathLike,
    meta_path: str | os.PathLike,
    version: int,
    on_bad_record: BadRecordPolicy,
    cache_dir: str | os.PathLike | None,
) -> SourceTables:
    BadRecords(on_bad_record)
    for path in (reviews_path, meta_path):
        if not os.path.exists(path):
            url = AMAZON_2023_URL if version == 2023 else AMAZON_2018_URL
            raise MissingInputError(f"{path}: no such file (Amazon Reviews {version} files are at {url})")
    interactions, skipped = build_dataset(
        _review_blocks,
        reviews_path,
        INTERACTION_FEATURES,
        "interactions",
        on_bad_record,
        cache_dir,
        options={"version": version},
        blocks=True,
    )
    items, items_skipped = build_dataset(
        _meta_blocks,
        meta_path,
        AMAZON_2023_ITEM_FEATURES if version == 2023 else AMAZON_2018_ITEM_FEATURES,
        "items",
        on_bad_record,
        cache_dir,
        options={"version": version},
        blocks=True,
    )
    category = Path(reviews_path).name.split(".")[0]
    return SourceTables(
        interactions=interactions,
        items=items,
        skipped=merge_counts(skipped, items_skipped),
        name=f"amazon{version}-{category}",
        items_path=os.fspath(meta_path),
    )


def _review_blocks(path: str, bad: BadRecords, version: int) -> Iterator[pa.Table]:
    keys = _REVIEWS_2023 if version == 2023 else _REVIEWS_2018
    user_key, item_key, rating_key, time_key = keys
    schema = pa.schema(
        [(user_key, pa.string()), (item_key, pa.string()), (rating_key, pa.float64()), (time_key, pa.int64())]
    )
    for block in iter_line_blocks(path):
        table = parse_block(block, schema)
        table = None if table is None else _review_columns(table, keys)
        if table is None:  # the per-line reader names (or skips and counts) what the columnar path cannot take
            rows = (_review_row(record, keys, path, line, bad) for line, record in _block_records(path, bad, block))
            table = pa.Table.from_pylist([r for r in rows if r is not None], schema=INTERACTION_SCHEMA)
        yield table


def _review_columns(table: pa.Table, keys: tuple[str, str, str, str]) -> pa.Table | None:
    """The canonical interactions of a parsed block, or None if a value needs the per-line reader's checks."""
    user_key, item_key, rating_key, time_key = keys
    user, item = required_text(table[user_key]), required_text(table[item_key])
    rating, ts = table[rating_key], table[time_key]
    if user is None or item is None or rating.null_count or ts.null_count:
        return None
    if pc.any(pc.is_nan(rating)).as_py() or pc.any(pc.less(ts, 0)).as_py():
        return None
    # as normalize_timestamp: float(ts) / 1000.0 for milliseconds, then int() (a floor: ts >= 0)
    ms = pc.greater_equal(ts, MILLISECONDS_THRESHOLD)
    seconds = pc.cast(pc.floor(pc.divide(pc.cast(ts, pa.float64()), 1000.0)), pa.int64())
    columns = [user, item, pc.if_else(ms, seconds, ts), pc.cast(rating, pa.float32())]
    return pa.Table.from_arrays(columns, schema=INTERACTION_SCHEMA)


def _review_row(record: dict, keys, path: str, line: int, bad: BadRecords) -> dict[str, Any] | None:
    user_key, item_key, rating_key, time_key = keys
    user = require_text(record, user_key, path, line, bad)
    if user is None:
        return None
    item = require_text(record, item_key, path, line, bad)
    if item is None:
        return None
    rating = parse_rating(record.get(rating_key), path, line, bad)
    if rating is None:
        return None
    ts = normalize_timestamp(record.get(time_key), path, line, bad)
    if ts is None:
        return None
    return {"user_id": user, "item_id": item, "timestamp": ts, "rating": rating}


def _meta_blocks(path: str, bad: BadRecords, version: int) -> Iterator[pa.Table]:
    id_key, fields = ("parent_asin", _META_2023) if version == 2023 else ("asin", _META_2018)
    features = AMAZON_2023_ITEM_FEATURES if version == 2023 else AMAZON_2018_ITEM_FEATURES
    schema = pa.schema(
        [(id_key, pa.string())]
        + [(key, pa.list_(pa.string()) if is_list else pa.string()) for key, _, is_list, _ in fields]
    )
    seen: set[str] = set()  # item ids kept so far, shared by both paths: the first line of an item wins
    for block in iter_line_blocks(path):
        table = parse_block(block, schema)
        table = None if table is None else _meta_columns(table, id_key, fields, features.arrow_schema)
        if table is None:
            rows = (
                _meta_row(record, id_key, fields, seen, path, line, bad)
                for line, record in _block_records(path, bad, block)
            )
            table = pa.Table.from_pylist([r for r in rows if r is not None], schema=features.arrow_schema)
        else:
            keep = np.ones(table.num_rows, dtype=bool)
            for k, item_id in enumerate(table.column("item_id").to_pylist()):
                if item_id in seen:
                    keep[k] = False
                else:
                    seen.add(item_id)
            if not keep.all():
                bad.counts["duplicate_item"] += int((~keep).sum())
                table = table.filter(pa.array(keep))
        yield table


def _meta_columns(table: pa.Table, id_key: str, fields, schema: pa.Schema) -> pa.Table | None:
    """The normalised items of a parsed block, or None if a row needs the per-line reader (missing id, no text)."""
    item_id = required_text(table[id_key])
    if item_id is None:
        return None
    columns, empty = [item_id], None
    for key, _, is_list, is_text in fields:
        column = text_list(table[key]) if is_list else optional_text(table[key])
        columns.append(column)
        if is_text:
            length = pc.list_value_length(column) if is_list else pc.utf8_length(column)
            is_empty = pc.equal(length, 0)
            empty = is_empty if empty is None else pc.and_(empty, is_empty)
    if pc.any(empty).as_py():
        return None
    return pa.Table.from_arrays(columns, schema=schema)


def _meta_row(record: dict, id_key: str, fields, seen: set[str], path: str, line: int, bad: BadRecords):
    text_columns = [column for _, column, _, is_text in fields if is_text]
    item_id = require_text(record, id_key, path, line, bad)
    if item_id is None:
        return None
    row: dict[str, Any] = {"item_id": item_id}
    for key, column, is_list, _ in fields:
        normalise = text_list_value if is_list else text_value
        value = normalise(record.get(key), key, path, line, bad)
        if value is None:
            return None
        row[column] = value
    if not any(row[column] for column in text_columns):
        bad.report("empty_item_text", path, line, f"item {item_id!r} has an empty {' and '.join(text_columns)}")
        return None
    if item_id in seen:
        # Not an error under any policy: the metadata dumps repeat some items; the first line wins.
        bad.counts["duplicate_item"] += 1
        return None
    seen.add(item_id)
    return row


def _block_records(path: str, bad: BadRecords, block: LineBlock) -> Iterator[tuple[int, dict[str, Any]]]:
    return iter_json_lines(path, bad, lines=block.lines(), first_line=block.first_line)


def find_amazon_files(data_dir: str | os.PathLike, category: str, version: int = 2023) -> tuple[Path, Path]:
    """Find the reviews and metadata files of one Amazon category, gzipped or not.

    Looks for `<Category>.jsonl.gz` (then `.jsonl`) and `meta_<Category>.jsonl.gz` (then `.jsonl`) for 2023, and
    `<Category>.json.gz` (then `.json`) and `meta_<Category>.json.gz` (then `.json`) for 2018. For a 2018 5-core
    file (`<Category>_5.json.gz`), the metadata is `meta_<Category>.json.gz`.

    Args:
        data_dir (`str` or `os.PathLike`):
            The directory holding the files.
        category (`str`):
            The category as spelt in the file names, e.g. `"All_Beauty"` or `"Video_Games"`.
        version (`int`, defaults to 2023):
            2023 or 2018.

    Returns:
        `tuple[Path, Path]`: the reviews and metadata paths.

    Raises:
        `FileNotFoundError`: a file is missing; the message names the files to put in ``data_dir`` and where to
        download them.
    """
    if version not in (2018, 2023):
        raise InvalidInputError(f"version must be 2023 or 2018, got {version!r}")
    data_dir = Path(data_dir)
    ext = ".jsonl" if version == 2023 else ".json"
    meta_category = category[:-2] if version == 2018 and category.endswith("_5") else category
    wanted = {"reviews": f"{category}{ext}", "metadata": f"meta_{meta_category}{ext}"}
    found, missing = {}, []
    for role, name in wanted.items():
        for candidate in (data_dir / f"{name}.gz", data_dir / name):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{data_dir / name}.gz (or {name})")
    if not missing:
        return found["reviews"], found["metadata"]

    if version == 2023:
        how = (
            f"Download them from {AMAZON_2023_URL} ('Grouped by Category': the review file {category}.jsonl.gz and "
            f"the meta file meta_{category}.jsonl.gz)"
        )
    else:
        how = (
            f"Download them from {AMAZON_2018_URL} (per category: the 'reviews' or '5-core' file and the 'metadata' "
            f"file, {category}.json.gz and meta_{meta_category}.json.gz)"
        )
    present = sorted(p.name for p in data_dir.glob("*.json*")) if data_dir.is_dir() else []
    there = f" {data_dir} holds {present[:20]}." if present else f" {data_dir} has no JSON files."
    raise MissingInputError(
        f"Amazon Reviews {version} category {category!r}: missing {' and '.join(missing)}. {how} and put them in "
        f"{data_dir}/, gzipped or not.{there}"
    )
