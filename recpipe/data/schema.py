"""The canonical tables every reader produces, and the error/skip policy for bad input.

Every source (MovieLens, Amazon 2018/2023, generic files) is turned into two Arrow tables:

- interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, seconds), ``rating`` (float32),
  in the file's row order (the order is the documented tie-break for equal timestamps);
- items: ``item_id`` (str) plus text fields (str, or list of str).

Bad records either stop the run with a :class:`DataFormatError` naming the file, the line and what is wrong
(``on_bad_record="error"``, the default), or are skipped and counted by kind (``on_bad_record="skip"``); the
counts end up in ``stats.json``. Nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import datasets

from recpipe.errors import InvalidInputError, MissingInputError

BadRecordPolicy = Literal["error", "skip"]

INTERACTION_FEATURES = datasets.Features(
    {
        "user_id": datasets.Value("string"),
        "item_id": datasets.Value("string"),
        "timestamp": datasets.Value("int64"),
        "rating": datasets.Value("float32"),
    }
)

# Timestamps above this are milliseconds: 1e11 seconds is the year 5138, 1e11 milliseconds is 1973.
MILLISECONDS_THRESHOLD = 100_000_000_000


class DataFormatError(InvalidInputError):
    """Raised for input that cannot be read; names the file, the line (1-based) and the problem."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        self.path, self.line, self.problem = str(path), line, message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class BadRecords:
    """Applies the bad-record policy and counts what was skipped, by kind."""

    policy: BadRecordPolicy = "error"
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self):
        if self.policy not in ("error", "skip"):
            raise InvalidInputError(f"on_bad_record must be 'error' or 'skip', got {self.policy!r}")

    def report(self, kind: str, path: str | os.PathLike, line: int | None, message: str) -> None:
        """Raise for this record, or count it under ``kind`` when skipping."""
        if self.policy == "error":
            raise DataFormatError(path, line, f"{message} (pass on_bad_record='skip' to skip and count such records)")
        self.counts[kind] += 1


@dataclass
class SourceTables:
    """What a reader returns: the canonical interactions and items, and the counts of skipped records."""

    interactions: datasets.Dataset
    items: datasets.Dataset
    skipped: dict[str, int] = field(default_factory=dict)
    name: str = "custom"
    items_path: str | None = None  # the file the items were read from, for errors about them


def open_text(path: str | os.PathLike):
    """Open a plain or gzipped text file (by its magic bytes, not its name) for UTF-8 reading of raw bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_json_lines(
    path: str | os.PathLike, bad: BadRecords, lines: IO[bytes] | None = None, first_line: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each JSON object line of a plain or gzipped JSONL file.

    The file is read as UTF-8 with signature (``utf-8-sig``): a byte-order mark at its start, which some exporters
    write, is dropped. Blank lines are ignored. Invalid JSON, non-object lines and non-UTF-8 bytes go through
    ``bad``. A truncated or corrupt gzip stream is always an error (the rest of the file cannot be read), naming the
    last good line. ``lines`` (a binary file holding part of ``path`` from its line ``first_line`` on) is read
    instead of the file.
    """
    if not os.path.exists(path):
        raise MissingInputError(f"{path}: no such file")
    line_no = first_line - 1
    with open_text(path) if lines is None else nullcontext(lines) as f:
        try:
            for line_no, raw in enumerate(f, start=first_line):
                if line_no == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad.report("non_utf8", path, line_no, f"bytes that are not UTF-8 ({e.reason} at byte {e.start})")
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as e:
                    bad.report("invalid_json", path, line_no, f"invalid JSON ({e.msg} at column {e.colno})")
                    continue
                if not isinstance(record, dict):
                    bad.report("invalid_json", path, line_no, f"expected a JSON object, got {type(record).__name__}")
                    continue
                yield line_no, record
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataFormatError(
                path, line_no + 1, f"the gzip stream is truncated or corrupt after line {line_no} ({e})"
            ) from e


def normalize_timestamp(value: Any, path: str | os.PathLike, line: int, bad: BadRecords) -> int | None:
    """Return a timestamp in whole seconds; values in milliseconds are detected and converted.

    Returns ``None`` (after reporting to ``bad``) for a missing or non-numeric value.
    """
    if isinstance(value, bool) or value is None:
        bad.report("bad_timestamp", path, line, f"timestamp missing or not a number: {value!r}")
        return None
    try:
        ts = float(value)
    except (TypeError, ValueError):
        bad.report("bad_timestamp", path, line, f"timestamp is not a number: {value!r}")
        return None
    if ts != ts or ts < 0:
        bad.report("bad_timestamp", path, line, f"timestamp is negative or NaN: {value!r}")
        return None
    if ts >= MILLISECONDS_THRESHOLD:
        ts /= 1000.0
    return int(ts)


def parse_rating(value: Any, path: str | os.PathLike, line: int, bad: BadRecords) -> float | None:
    """Return the rating as a float, or ``None`` after reporting a missing or non-numeric value."""
    if isinstance(value, bool) or value is None:
        bad.report("bad_rating", path, line, f"rating missing or not a number: {value!r}")
        return None
    try:
        rating = float(value)
    except (TypeError, ValueError):
        bad.report("bad_rating", path, line, f"rating is not a number: {value!r}")
        return None
    if rating != rating:
        bad.report("bad_rating", path, line, "rating is NaN")
        return None
    return rating


def require_text(record: dict, key: str, path: str | os.PathLike, line: int, bad: BadRecords) -> str | None:
    """Return ``record[key]`` as a non-empty string (numbers are accepted and converted), else report it."""
    value = record.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        kind = "missing_field" if value is None else "wrong_type"
        bad.report(kind, path, line, f"required field {key!r} is missing, empty or not a string: {value!r}")
        return None
    return value
