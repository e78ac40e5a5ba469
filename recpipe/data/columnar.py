"""Columnar reading of JSON-lines files: blocks of whole lines parsed by pyarrow, with the per-line reader kept for
the blocks where the two would not agree.

Per-line ``json.loads`` reads about 45K Amazon reviews a second; pyarrow's JSON parser reads the same lines several
times faster and releases the GIL, so the decompression of the next block (in a thread; zlib releases the GIL too)
runs beside it. Memory stays at a few blocks whatever the file's size.

A block takes the columnar path only when pyarrow reads it exactly as the per-line reader would: every line one
JSON object, no blank line, valid UTF-8 (pyarrow does not check the bytes of fields it skips), every kept value of
the expected type and valid. Anything else — a bad line, a number where a string is expected, a missing field, a
byte-order mark — sends the whole block to the per-line reader, which names the file and line of a bad record or
skips and counts it, as it always did. A clean file never needs it.
"""

from __future__ import annotations

import gzip
import io
import os
import queue
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from recpipe.data.schema import DataFormatError

BLOCK_BYTES = 16 << 20
# what str.strip() strips: str.isspace() holds for these (a few more than Unicode's White_Space, e.g. \x1c-\x1f)
PY_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
# a line that bytes.strip() empties (the per-line reader skips it; pyarrow reads nothing for it)
_BLANK_FIRST_LINE = re.compile(rb"[ \t\r\x0b\x0c]*(?:\n|\Z)")
_BLANK_INNER_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")


@dataclass
class LineBlock:
    """Whole lines of a file (``data`` ends with a newline except at the end of the file)."""

    first_line: int  # 1-based number of the block's first line
    data: bytes

    @property
    def num_lines(self) -> int:
        return self.data.count(b"\n") + (not self.data.endswith(b"\n"))

    def lines(self) -> io.BytesIO:
        """The block as a binary file: iterating it gives the lines exactly as iterating the file does."""
        return io.BytesIO(self.data)


def _open(path: str | os.PathLike):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _chunks(path: str | os.PathLike, size: int) -> Iterator[bytes]:
    with _open(path) as f:
        while chunk := f.read(size):
            yield chunk


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run ``items`` in a thread, ``depth`` ahead; its exception is raised here, where it would have been."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
        except BaseException as e:  # handed over to the consumer
            q.put((None, e))
        q.put((done, None))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def iter_line_blocks(path: str | os.PathLike, block_bytes: int | None = None) -> Iterator[LineBlock]:
    """Blocks of about ``block_bytes`` (default ``BLOCK_BYTES``) whole lines of a plain or gzipped file, decompressed
    a block ahead in a thread.

    A truncated or corrupt gzip stream is an error, as for the per-line reader: after the blocks decompressed before
    the damage, a [`DataFormatError`] names the line after them.
    """
    line, tail = 1, b""
    try:
        for chunk in _prefetch(_chunks(path, block_bytes or BLOCK_BYTES)):
            data = tail + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                tail = data
                continue
            block, tail = LineBlock(line, data[:cut]), data[cut:]
            line += block.num_lines
            yield block
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataFormatError(
            path, line, f"the gzip stream is truncated or corrupt after line {line - 1} ({e})"
        ) from e
    if tail:
        yield LineBlock(line, tail)


def parse_block(block: LineBlock, schema: pa.Schema) -> pa.Table | None:
    """The block's ``schema`` fields as a table (one row a line, other fields skipped), or None where pyarrow
    would not read it as ``json.loads`` line by line does: an invalid line, a line that is not one JSON object, a
    blank line, bytes that are not UTF-8, or a value of another type than ``schema`` says."""
    data = block.data
    if data.startswith(b"\xef\xbb\xbf") or _has_blank_line(data) or not _valid_utf8(data):
        return None
    try:
        table = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(use_threads=True, block_size=1 << 20),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    # pyarrow reads two objects on one line as two rows; json.loads rejects that line
    return table if table.num_rows == block.num_lines else None


def _has_blank_line(data: bytes) -> bool:
    if _BLANK_FIRST_LINE.match(data) or _BLANK_INNER_LINE.search(data):
        return True
    last = data[data.rfind(b"\n") + 1 :]  # a last line without its newline
    return bool(last) and not last.strip()


def _valid_utf8(data: bytes) -> bool:
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def strip(array: pa.Array) -> pa.Array:
    """``str.strip()`` on every string."""
    return pc.utf8_trim(array, characters=PY_WHITESPACE)


def required_text(array: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The column as is, or None if a value is missing or blank (the per-line reader reports those)."""
    if array.null_count or pc.any(pc.equal(pc.utf8_length(strip(array)), 0)).as_py():
        return None
    return array


def optional_text(array: pa.ChunkedArray) -> pa.ChunkedArray:
    """null → ``""``, others stripped (as ``text_value``)."""
    return strip(array.fill_null(""))


def text_list(array: pa.ChunkedArray) -> pa.Array:
    """null → ``[]``; entries stripped, null and blank entries dropped (as ``text_list_value``)."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    array = array.fill_null(pa.scalar([], array.type))
    values = strip(pc.list_flatten(array))
    parents = pc.list_parent_indices(array)
    keep = pc.and_(pc.is_valid(values), pc.greater(pc.utf8_length(values), 0)).fill_null(False)
    values, parents = values.filter(keep), parents.filter(keep)
    counts = np.bincount(parents.to_numpy(), minlength=len(array)).astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts, dtype=np.int32)]), pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(pa.string()))
