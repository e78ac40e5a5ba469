"""Reader for interactions (and optionally items) in CSV/TSV, JSON lines or Parquet files, plus the streaming
machinery the other readers share.

Every reader streams its input into an on-disk, memory-mapped Arrow table with
:func:`build_dataset`, which wraps ``datasets.Dataset.from_generator``. The cache is keyed by the file's identity
(absolute path, size, modification time, inode), the reader, its options and the bad-record policy, so a changed
file is never served a stale table. The counts of skipped records are stored next to the cache, because a cache hit
does not run the generator that counts them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.builder import Key
from datasets.packaged_modules.generator.generator import GeneratorConfig

from recpipe.data.schema import (
    INTERACTION_FEATURES,
    BadRecordPolicy,
    BadRecords,
    DataFormatError,
    SourceTables,
    iter_json_lines,
    normalize_timestamp,
    open_text,
    parse_rating,
    require_text,
)
from recpipe.errors import InvalidInputError, MissingInputError

# Part of every cache key: bump it when a reader's output for the same input changes, so old caches are not reused.
CACHE_VERSION = 1

CANONICAL_COLUMNS = ("user_id", "item_id", "timestamp", "rating")
_PEEK_RECORDS = 1000
_PARQUET_BATCH_ROWS = 10_000


def build_dataset(
    rows: Callable[..., Iterator[dict[str, Any]]],
    path: str | os.PathLike,
    features: datasets.Features,
    what: str,
    on_bad_record: BadRecordPolicy = "error",
    cache_dir: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    writer_batch_size: int = 10_000,
    blocks: bool = False,
) -> tuple[datasets.Dataset, dict[str, int]]:
    """Stream the rows of one file into a memory-mapped Arrow dataset, cached on disk, and count skipped records.

    Args:
        rows (`Callable`):
            A module-level generator function called as ``rows(path, bad, **options)`` that yields one dict per
            record, matching ``features``, and reports bad records to the [`BadRecords`] ``bad``; with ``blocks``,
            it yields `pyarrow.Table`s of many records each (a columnar reader).
        path (`str` or `os.PathLike`):
            The file to read.
        features (`datasets.Features`):
            The columns of the table.
        what (`str`):
            What the rows are ("interactions", "items"), for the error raised when no row could be read.
        on_bad_record (`str`, defaults to `"error"`):
            `"error"` to raise a [`DataFormatError`] at the first bad record, `"skip"` to skip and count them.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where the Arrow table and the skip counts are cached; defaults to the `datasets` cache.
        options (`Mapping`, *optional*):
            Extra keyword arguments for ``rows``; must be JSON-serialisable (they are part of the cache key) and
            hold no top-level lists (`datasets` would shard over them).
        writer_batch_size (`int`, defaults to 10000):
            Rows buffered in memory before they are written to the Arrow file.
        blocks (`bool`, defaults to `False`):
            ``rows`` yields tables, not dicts: they are written as they come, with no per-row Python work.

    Returns:
        `tuple[datasets.Dataset, dict[str, int]]`: the table and the number of skipped records by kind.

    Raises:
        `FileNotFoundError`: ``path`` does not exist.
        [`DataFormatError`]: a bad record under the `"error"` policy, an unreadable file, or no row at all.
    """
    BadRecords(on_bad_record)  # validates the policy before any work
    options = dict(options or {})
    path = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MissingInputError(f"{path}: no such file") from None
    key = {
        "cache_version": CACHE_VERSION,
        "rows": f"{rows.__module__}.{rows.__qualname__}",
        "path": path,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
        "policy": on_bad_record,
        "options": options,
        "features": repr(features),
    }
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    root = os.path.expanduser(os.fspath(cache_dir) if cache_dir is not None else datasets.config.HF_DATASETS_CACHE)
    counts_path = os.path.join(root, "recpipe_skipped", f"{fingerprint}.json")
    gen_kwargs = {
        "rows": rows,
        "path": path,
        "policy": on_bad_record,
        "options": options,
        "counts_path": counts_path,
        "what": what,
    }
    for _ in range(2):
        try:
            if blocks:
                dataset = _from_table_generator(_generate, features, root, gen_kwargs, fingerprint)
            else:
                dataset = datasets.Dataset.from_generator(
                    _generate,
                    features=features,
                    cache_dir=root,
                    gen_kwargs=gen_kwargs,
                    fingerprint=fingerprint,
                    writer_batch_size=writer_batch_size,
                )
        except datasets.exceptions.DatasetGenerationError as e:
            cause = e.__cause__
            if not isinstance(cause, (DataFormatError, OSError)):
                raise
        else:
            counts = _read_counts(counts_path)
            if counts is not None:
                return dataset, counts
            # Served from a cache whose counts file is gone: drop that cache so the next pass regenerates both.
            builder_dir = os.path.dirname(os.path.dirname(dataset.cache_files[0]["filename"]))
            del dataset
            shutil.rmtree(builder_dir, ignore_errors=True)
            continue
        # Raised outside the except block so the traceback is the reader's, not datasets' wrapper.
        raise cause
    raise RuntimeError(f"{path}: the cached {what} table has no skip counts even after regenerating it")


def _generate(
    rows: Callable[..., Iterator[dict[str, Any]]],
    path: str,
    policy: BadRecordPolicy,
    options: dict[str, Any],
    counts_path: str,
    what: str,
) -> Iterator[dict[str, Any]]:
    bad = BadRecords(policy)
    n = 0
    for row in rows(path, bad, **options):
        n += row.num_rows if isinstance(row, pa.Table) else 1
        yield row
    if n == 0:
        skipped = ", ".join(f"{k}: {v}" for k, v in sorted(bad.counts.items()))
        raise DataFormatError(path, None, f"no {what} could be read" + (f" (skipped {skipped})" if skipped else ""))
    # Written once the file is fully read, hence always before datasets commits the cache it belongs to.
    os.makedirs(os.path.dirname(counts_path), exist_ok=True)
    tmp = f"{counts_path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(dict(bad.counts), f)
    os.replace(tmp, counts_path)


class TableGenerator(datasets.ArrowBasedBuilder):
    """``datasets``' ``Generator`` builder for generators of Arrow tables: each table is cast to the features and
    written at once (``Dataset.from_generator`` takes one dict per row)."""

    BUILDER_CONFIG_CLASS = GeneratorConfig

    def _info(self):
        return datasets.DatasetInfo(features=self.config.features)

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs=self.config.gen_kwargs)]

    def _generate_tables(self, **gen_kwargs):
        for k, table in enumerate(self.config.generator(**gen_kwargs)):
            yield Key(0, k), table


def _from_table_generator(generator, features, cache_dir, gen_kwargs, fingerprint) -> datasets.Dataset:
    builder = TableGenerator(
        cache_dir=cache_dir,
        features=features,
        generator=generator,
        gen_kwargs=gen_kwargs,
        config_id=f"default-fingerprint={fingerprint}",
    )
    builder.download_and_prepare()
    dataset = builder.as_dataset(split=datasets.Split.TRAIN)
    dataset._fingerprint = fingerprint
    return dataset


def _read_counts(counts_path: str) -> dict[str, int] | None:
    try:
        with open(counts_path) as f:
            return {k: int(v) for k, v in json.load(f).items()}
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def merge_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    """Sum skip counts by kind, keeping only non-zero kinds, sorted by kind."""
    total: dict[str, int] = {}
    for c in counts:
        for kind, n in c.items():
            total[kind] = total.get(kind, 0) + n
    return {k: v for k, v in sorted(total.items()) if v}


def text_value(value: Any, key: str, path: str | os.PathLike, line: int, bad: BadRecords) -> str | None:
    """Normalise an optional text field to a stripped string: null → ``""``, numbers → their text.

    Returns ``None`` after reporting ``wrong_type`` to ``bad`` for anything else (lists, objects, booleans).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    bad.report("wrong_type", path, line, f"field {key!r} should be a string, got {type(value).__name__}")
    return None


def text_list_value(value: Any, key: str, path: str | os.PathLike, line: int, bad: BadRecords) -> list[str] | None:
    """Normalise an optional list-of-text field: null → ``[]``, a plain string → ``[string]``, blank entries dropped.

    Returns ``None`` after reporting ``wrong_type`` to ``bad`` for objects, booleans or lists holding them.
    """
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    out = []
    for v in value:
        if v is None:
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            bad.report(
                "wrong_type", path, line, f"field {key!r} should be a list of strings, holds a {type(v).__name__}"
            )
            return None
        if v.strip():
            out.append(v.strip())
    return out


def read_generic(
    interactions_path: str | os.PathLike,
    items_path: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
    item_text_fields: list[str] | None = None,
    on_bad_record: BadRecordPolicy = "error",
    cache_dir: str | os.PathLike | None = None,
) -> SourceTables:
    """Read interactions, and optionally items, from CSV/TSV, JSON lines or Parquet files.

    The format follows the extension: `.csv`, `.tsv`, `.jsonl`/`.json` (JSON lines, one object per line), each
    optionally gzipped (`.gz`), or `.parquet`. Files are streamed into memory-mapped Arrow tables, so their size is
    not limited by memory.

    Args:
        interactions_path (`str` or `os.PathLike`):
            One row per interaction, with a user id, an item id, a timestamp (seconds or milliseconds since the
            epoch, or an ISO 8601 date-time, read as UTC when it has no offset) and optionally a rating.
        items_path (`str` or `os.PathLike`, *optional*):
            One row per item: its id and its text fields. Without it, the items are the distinct item ids of the
            interactions, with no text.
        columns (`dict[str, str]`, *optional*):
            Maps the canonical names `user_id`, `item_id`, `timestamp`, `rating` to the files' column names; a name
            left out maps to itself. `item_id` applies to both files. Without a `rating` column every rating is 1.0.
        item_text_fields (`list[str]`, *optional*):
            The item columns to keep as text. Defaults to every other column of the items file that holds text
            (strings, numbers, lists of strings); for JSON lines, the keys seen in its first 1000 records.
        on_bad_record (`str`, defaults to `"error"`):
            `"error"` raises a [`DataFormatError`] naming the file and line (for Parquet, the 1-based row) at the
            first bad record; `"skip"` skips bad records and counts them by kind in `SourceTables.skipped`.
            Duplicate item ids in the items file are never an error: the first is kept, the others are counted as
            `duplicate_item`. An item whose text fields are all empty is a bad record of kind `empty_item_text`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where the Arrow tables are cached; defaults to the `datasets` cache.

    Returns:
        [`SourceTables`]: interactions with the columns `user_id`, `item_id`, `timestamp` (int64 seconds), `rating`
        (float32), in file order; items with `item_id` and the text fields.

    Raises:
        `FileNotFoundError`: a file does not exist.
        `ValueError`: an unsupported extension, an unknown canonical name in ``columns`` or an unknown policy.
        [`DataFormatError`]: a missing column, an unreadable file, or a bad record under the `"error"` policy.

    Example:

    ```py
    >>> tables = read_generic("ratings.csv", columns={"user_id": "userId", "item_id": "movieId"})
    >>> tables.interactions.column_names
    ['user_id', 'item_id', 'timestamp', 'rating']
    ```
    """
    BadRecords(on_bad_record)
    unknown = set(columns or {}) - set(CANONICAL_COLUMNS)
    if unknown:
        raise InvalidInputError(
            f"columns has unknown canonical names {sorted(unknown)}; expected some of {CANONICAL_COLUMNS}"
        )
    mapping = {name: (columns or {}).get(name, name) for name in CANONICAL_COLUMNS}

    fmt = file_format(interactions_path)
    header = _columns_of(interactions_path, fmt)
    for name in ("user_id", "item_id", "timestamp"):
        if header is not None and mapping[name] not in header:
            _missing_column(interactions_path, fmt, name, mapping[name], header)
    if header is not None and mapping["rating"] not in header:
        if columns and "rating" in columns:
            _missing_column(interactions_path, fmt, "rating", mapping["rating"], header)
        mapping["rating"] = None
    interactions, skipped = build_dataset(
        _generic_interaction_rows,
        interactions_path,
        INTERACTION_FEATURES,
        "interactions",
        on_bad_record,
        cache_dir,
        options={"fmt": fmt, "mapping": mapping, "rating_explicit": bool(columns and "rating" in columns)},
    )

    if items_path is None:
        ids = pc.unique(interactions.data.column("item_id"))
        items = datasets.Dataset(pa.table({"item_id": ids}))
        return SourceTables(interactions=interactions, items=items, skipped=merge_counts(skipped))

    items_fmt = file_format(items_path)
    id_column = mapping["item_id"]
    fields = _item_fields(items_path, items_fmt, id_column, item_text_fields)
    features = datasets.Features(
        {
            "item_id": datasets.Value("string"),
            **{
                name: datasets.List(datasets.Value("string")) if is_list else datasets.Value("string")
                for name, is_list in fields.items()
            },
        }
    )
    items, items_skipped = build_dataset(
        _generic_item_rows,
        items_path,
        features,
        "items",
        on_bad_record,
        cache_dir,
        options={"fmt": items_fmt, "id_column": id_column, "fields": fields},
        writer_batch_size=1_000,
    )
    return SourceTables(
        interactions=interactions,
        items=items,
        skipped=merge_counts(skipped, items_skipped),
        items_path=os.fspath(items_path),
    )


def file_format(path: str | os.PathLike) -> str:
    """Return `"csv"`, `"tsv"`, `"jsonl"` or `"parquet"` from a file's extension (a `.gz` suffix is allowed, except
    for Parquet)."""
    name = os.fspath(path).lower()
    base = name[:-3] if name.endswith(".gz") else name
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if base.endswith(ext):
            return fmt
    if name.endswith(".parquet"):
        return "parquet"
    raise InvalidInputError(
        f"{path}: unsupported file type; expected .csv, .tsv, .jsonl or .json (JSON lines), each optionally .gz, "
        "or .parquet"
    )


def iter_delimited_rows(path: str | os.PathLike, delimiter: str, bad: BadRecords) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each record of a plain or gzipped CSV/TSV file, the header included.

    The line number is the record's first physical line (a quoted field may span lines). Blank lines are ignored, a
    leading byte-order mark is dropped. Non-UTF-8 lines (kind `non_utf8`) and malformed quoting (kind
    `malformed_row`) go through ``bad``; a truncated or corrupt gzip stream is always a [`DataFormatError`].
    """
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: no such file")
    with open_text(path) as f:
        lines = _DecodedLines(f, path, bad)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        try:
            while True:
                lines.record_start = None
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    start = lines.record_start or lines.line_no
                    span = "" if start == lines.line_no else f" (the record runs to line {lines.line_no})"
                    bad.report("malformed_row", path, start, f"malformed quoting: {e}{span}")
                    continue
                if any(field.strip() for field in fields):
                    yield lines.record_start or lines.line_no, fields
        except (EOFError, OSError, zlib.error) as e:
            raise DataFormatError(
                path, lines.line_no + 1, f"the gzip stream is truncated or corrupt after line {lines.line_no} ({e})"
            ) from e


class _DecodedLines:
    """Iterates the decoded lines of a binary file for `csv.reader`, tracking physical line numbers."""

    def __init__(self, f: io.BufferedIOBase, path: str | os.PathLike, bad: BadRecords):
        self.f, self.path, self.bad = f, path, bad
        self.line_no = 0
        self.record_start: int | None = None

    def __iter__(self) -> _DecodedLines:
        return self

    def __next__(self) -> str:
        while True:
            raw = next(self.f)
            self.line_no += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.bad.report("non_utf8", self.path, self.line_no, f"bytes that are not UTF-8 ({e.reason})")
                continue
            if self.line_no == 1:
                text = text.removeprefix("\ufeff")
            if self.record_start is None:
                self.record_start = self.line_no
            return text


def _columns_of(path: str | os.PathLike, fmt: str) -> list[str] | None:
    """The column names of a CSV/TSV header or a Parquet schema; ``None`` for JSON lines (which have none)."""
    if fmt in ("csv", "tsv"):
        for _, fields in iter_delimited_rows(path, "," if fmt == "csv" else "\t", BadRecords("error")):
            return [field.strip() for field in fields]
        raise DataFormatError(path, None, "the file is empty; expected a header line naming the columns")
    if fmt == "parquet":
        return _parquet_schema(path).names
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: no such file")
    return None


def _parquet_schema(path: str | os.PathLike) -> pa.Schema:
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: no such file")
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataFormatError(path, None, f"cannot read the Parquet file ({e})") from e


def _missing_column(path: str | os.PathLike, fmt: str, name: str, column: str, header: list[str]) -> None:
    where = 1 if fmt in ("csv", "tsv") else None
    raise DataFormatError(
        path,
        where,
        f"no column {column!r} for {name}; the file has {header}. Map it with columns={{{name!r}: '<column name>'}}",
    )


def _iter_records(
    path: str | os.PathLike, fmt: str, bad: BadRecords, needed: list[str] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_or_row, record)``; CSV/TSV empty cells become ``None``, like missing JSON keys."""
    if fmt == "jsonl":
        yield from iter_json_lines(path, bad)
    elif fmt in ("csv", "tsv"):
        rows = iter_delimited_rows(path, "," if fmt == "csv" else "\t", bad)
        header = None
        for line, fields in rows:
            if header is None:
                header = [field.strip() for field in fields]
                continue
            if len(fields) != len(header):
                bad.report("malformed_row", path, line, f"expected {len(header)} fields, got {len(fields)}")
                continue
            yield line, {k: (v if v != "" else None) for k, v in zip(header, fields)}
    else:
        row = 0
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=needed)
            for batch in batches:
                for record in batch.to_pylist():
                    row += 1
                    yield row, record
        except (pa.ArrowException, OSError) as e:
            raise DataFormatError(path, row + 1, f"cannot read the Parquet file ({e})") from e


def _timestamp_value(value: Any) -> Any:
    """Turn date-times (Parquet timestamps, ISO 8601 strings) into epoch seconds; anything else is left as is."""
    if isinstance(value, str):
        try:
            float(value)
            return value
        except ValueError:
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return value


def _generic_interaction_rows(
    path: str, bad: BadRecords, fmt: str, mapping: dict[str, str | None], rating_explicit: bool
) -> Iterator[dict[str, Any]]:
    rating_col = mapping["rating"]
    needed = [c for c in mapping.values() if c is not None]
    use_rating = rating_col is not None and (fmt != "jsonl" or rating_explicit)
    decided = fmt != "jsonl" or rating_explicit
    for line, record in _iter_records(path, fmt, bad, needed):
        if not decided:
            # JSON lines have no header: a rating column exists when the first record has it.
            use_rating, decided = rating_col in record, True
        user = require_text(record, mapping["user_id"], path, line, bad)
        if user is None:
            continue
        item = require_text(record, mapping["item_id"], path, line, bad)
        if item is None:
            continue
        if use_rating:
            rating = parse_rating(record.get(rating_col), path, line, bad)
            if rating is None:
                continue
        else:
            rating = 1.0
        ts = normalize_timestamp(_timestamp_value(record.get(mapping["timestamp"])), path, line, bad)
        if ts is None:
            continue
        yield {"user_id": user, "item_id": item, "timestamp": ts, "rating": rating}


def _item_fields(path: str | os.PathLike, fmt: str, id_column: str, requested: list[str] | None) -> dict[str, bool]:
    """Return the item text fields, each mapped to whether it holds a list of strings."""
    if fmt == "parquet":
        schema = _parquet_schema(path)
        types = {f.name: f.type for f in schema}
        if id_column not in types:
            _missing_column(path, fmt, "item_id", id_column, schema.names)
        for name in requested or ():
            if name not in types:
                raise DataFormatError(
                    path, None, f"no column {name!r} (in item_text_fields); the file has {schema.names}"
                )

        def is_list(t: pa.DataType) -> bool:
            return pa.types.is_list(t) or pa.types.is_large_list(t)

        def is_text(t: pa.DataType) -> bool:
            if is_list(t):
                t = t.value_type
            return (
                pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or pa.types.is_integer(t)
                or pa.types.is_floating(t)
            )

        names = requested or [n for n in schema.names if n != id_column and is_text(types[n])]
        return {n: is_list(types[n]) for n in names}
    if fmt in ("csv", "tsv"):
        header = _columns_of(path, fmt)
        if id_column not in header:
            _missing_column(path, fmt, "item_id", id_column, header)
        for name in requested or ():
            if name not in header:
                raise DataFormatError(path, 1, f"no column {name!r} (in item_text_fields); the header has {header}")
        return {n: False for n in (requested or [h for h in header if h != id_column])}
    # JSON lines have no schema: peek at the first records for the keys and for which of them hold lists.
    kinds: dict[str, bool | None] = {}  # True: list of text, False: text, None: not text (objects, booleans)
    records = iter_json_lines(path, BadRecords("skip"))
    for i, (_, record) in enumerate(records):
        if i == _PEEK_RECORDS:
            break
        for key, value in record.items():
            if key == id_column or (requested and key not in requested):
                continue
            kinds.setdefault(key, False)
            kind = _json_kind(value)
            if kind is None or kinds[key] is None:
                kinds[key] = None
            elif kind:
                kinds[key] = True
    records.close()
    if requested:
        return {n: bool(kinds.get(n)) for n in requested}
    return {n: kind for n, kind in kinds.items() if kind is not None}


def _json_kind(value: Any) -> bool | None:
    """True for a list of text, False for text (or null), None for anything else."""

    def is_text(v: Any) -> bool:
        return v is None or isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if isinstance(value, list):
        return True if all(is_text(v) for v in value) else None
    return False if is_text(value) else None


def _generic_item_rows(
    path: str, bad: BadRecords, fmt: str, id_column: str, fields: dict[str, bool]
) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for line, record in _iter_records(path, fmt, bad, [id_column, *fields]):
        item_id = require_text(record, id_column, path, line, bad)
        if item_id is None:
            continue
        row: dict[str, Any] = {"item_id": item_id}
        for name, is_list in fields.items():
            value = record.get(name)
            if is_list:
                value = text_list_value(value, name, path, line, bad)
            elif isinstance(value, list):
                bad.report("wrong_type", path, line, f"field {name!r} holds a list here but a string in earlier rows")
                value = None
            else:
                value = text_value(value, name, path, line, bad)
            if value is None:
                break
            row[name] = value
        else:
            if fields and not any(row[name] for name in fields):
                bad.report("empty_item_text", path, line, f"item {item_id!r} has no text in {list(fields)}")
                continue
            if item_id in seen:
                # Not an error under any policy: metadata dumps repeat items; the first line wins.
                bad.counts["duplicate_item"] += 1
                continue
            seen.add(item_id)
            yield row
