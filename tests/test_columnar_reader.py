"""The columnar Amazon reader reads every file exactly as the per-line reader does: the same tables, the same skip
counts, the same error (file and line) — and a clean file never needs the per-line reader."""

import json

import pytest
from helpers import meta_2023, review_2023, write_lines

from recpipe.data import amazon, columnar
from recpipe.data.amazon import read_amazon_2023
from recpipe.data.schema import BadRecords, DataFormatError, iter_json_lines


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 2_000)  # a few lines a block: lines cross block boundaries


def per_line_reviews(path, policy):
    """The reference: the per-line reader over the whole file."""
    bad = BadRecords(policy)
    keys = amazon._REVIEWS_2023
    rows = [amazon._review_row(r, keys, str(path), line, bad) for line, r in iter_json_lines(path, bad)]
    return [r for r in rows if r is not None], dict(bad.counts)


def per_line_items(path, policy):
    bad, seen = BadRecords(policy), set()
    rows = [
        amazon._meta_row(r, "parent_asin", amazon._META_2023, seen, str(path), line, bad)
        for line, r in iter_json_lines(path, bad)
    ]
    return [r for r in rows if r is not None], dict(bad.counts)


def many_reviews(n=60):
    return [review_2023(f"U{i % 9}", f"P{i % 4}", float(1 + i % 5), 1588687728923 + 1000 * i) for i in range(n)]


def test_clean_file_never_needs_the_per_line_reader(tmp_path, monkeypatch):
    reviews = write_lines(tmp_path / "All_Beauty.jsonl.gz", many_reviews(), gz=True)
    items = [meta_2023(f"P{i}", f"Item {i}", features=[f" f{i} ", "", None], store=None) for i in range(4)]
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", items + [meta_2023("P1", "again")])
    expected_reviews, _ = per_line_reviews(reviews, "error")
    expected_items, _ = per_line_items(meta, "error")

    def fail(*args):
        raise AssertionError("the per-line reader was used on a clean block")

    monkeypatch.setattr(amazon, "_block_records", fail)
    tables = read_amazon_2023(reviews, meta, cache_dir=tmp_path / "cache")
    assert tables.interactions.to_list() == expected_reviews
    assert len(expected_reviews) == 60 and expected_reviews[0]["timestamp"] == 1588687728
    assert tables.items.to_list() == expected_items
    assert tables.items[0]["features"] == ["f0"] and tables.items[0]["store"] == ""
    assert tables.skipped == {"duplicate_item": 1}


ODD_REVIEW_LINES = [
    pytest.param(b'{"user_id": "U9", "parent_asin": "P1", "rating": 5.0,', id="invalid-json"),
    pytest.param(review_2023("U9", "P1").encode() + b" " + review_2023("U8", "P2").encode(), id="two-objects"),
    pytest.param(
        json.dumps({**json.loads(review_2023("U9", "P1")), "text": "Ren\xe9e"}, ensure_ascii=False).encode("latin-1"),
        id="non-utf8-in-a-skipped-field",
    ),
    pytest.param(b"   \t", id="whitespace-line"),
    pytest.param(review_2023(user=12345), id="numeric-user"),
    pytest.param(review_2023(user="   "), id="blank-user"),
    pytest.param(review_2023(rating="4"), id="rating-as-text"),
    pytest.param(review_2023(rating=True), id="rating-bool"),
    pytest.param(review_2023("U9", "P1").replace('"rating": 5.0', '"rating": NaN').encode(), id="rating-nan"),
    pytest.param(review_2023(ts=1588687728.5), id="float-timestamp"),
    pytest.param(review_2023(ts=-5), id="negative-timestamp"),
    pytest.param(review_2023(parent_asin=None), id="missing-item"),
    pytest.param(b"[1, 2]", id="not-an-object"),
]


@pytest.mark.parametrize("odd", ODD_REVIEW_LINES)
def test_odd_review_lines_read_as_the_per_line_reader_reads_them(tmp_path, odd):
    lines = many_reviews(40)
    lines.insert(27, odd)  # line 28, a few blocks into the file
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", lines)
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", [meta_2023(f"P{i}") for i in range(4)])

    error_lines = assert_reads_as_per_line(reviews, meta, tmp_path, per_line_reviews, lambda t: t.interactions)
    assert set(error_lines) <= {28}


def assert_reads_as_per_line(reviews, meta, tmp_path, per_line, table) -> list[int]:
    """Under each bad-record policy the columnar reader gives what ``per_line(reviews, policy)`` gives: the same
    error (file, line, problem) or the same ``table(tables)`` rows and skip counts. Returns the error lines."""
    error_lines = []
    for policy in ("error", "skip"):
        try:
            expected = per_line(reviews, policy)
        except DataFormatError as e:
            with pytest.raises(DataFormatError) as info:
                read_amazon_2023(reviews, meta, on_bad_record=policy, cache_dir=tmp_path / "cache")
            assert (info.value.path, info.value.line, info.value.problem) == (e.path, e.line, e.problem)
            error_lines.append(e.line)
            continue
        tables = read_amazon_2023(reviews, meta, on_bad_record=policy, cache_dir=tmp_path / "cache")
        assert (table(tables).to_list(), tables.skipped) == expected
    return error_lines


ODD_META_LINES = [
    pytest.param(meta_2023("P9", title=None, features=[], description=[]), id="no-text"),
    pytest.param(meta_2023("P9", description="one string"), id="string-for-a-list"),
    pytest.param(meta_2023("P9", title=12), id="numeric-title"),
    pytest.param(meta_2023("P9", features=[1.5, "x"]), id="number-in-a-list"),
    pytest.param(meta_2023("P9", features={"a": "b"}), id="object-for-a-list"),
    pytest.param(meta_2023(None), id="missing-id"),
    pytest.param(meta_2023("P2", "a duplicate after a bad block"), id="duplicate"),
    pytest.param(meta_2023("P9", title="\x1c Soap \u3000"), id="python-whitespace"),
]


@pytest.mark.parametrize("odd", ODD_META_LINES)
def test_odd_meta_lines_read_as_the_per_line_reader_reads_them(tmp_path, odd):
    lines = [meta_2023(f"P{i}", f"Item {i}", features=["a", " b "]) for i in range(12)]
    lines.insert(7, odd)
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl.gz", lines, gz=True)
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", many_reviews(8))

    items_per_line = lambda _, policy: per_line_items(meta, policy)  # noqa: E731
    assert_reads_as_per_line(reviews, meta, tmp_path, items_per_line, lambda t: t.items)


def test_blocks_hold_whole_lines_with_their_numbers(tmp_path):
    lines = [f'{{"n": {i}, "pad": "{"x" * (i * 37 % 500)}"}}' for i in range(300)]
    path = write_lines(tmp_path / "f.jsonl.gz", lines, gz=True)
    blocks = list(columnar.iter_line_blocks(path, block_bytes=1_000))
    assert len(blocks) > 10
    numbered = [
        (block.first_line + k, json.loads(line)["n"])
        for block in blocks
        for k, line in enumerate(block.data.splitlines())
    ]
    assert numbered == [(i + 1, i) for i in range(300)]
