import json
import os

import datasets
import pytest
from helpers import meta_2023, review_2023, write_lines

from recpipe.data.amazon import find_amazon_files, read_amazon_2018, read_amazon_2023
from recpipe.data.schema import INTERACTION_FEATURES, DataFormatError


def review_2018(user="A3SA5N5UNJ4Z6Q", item="0700026657", rating=5.0, ts=1441065600, **extra):
    record = {
        "overall": rating,
        "verified": True,
        "reviewTime": "09 1, 2015",
        "reviewerID": user,
        "asin": item,
        "style": {"Format:": " Paperback"},
        "reviewerName": "Alyssa",
        "reviewText": "This game is a bit hard to get the hang of, but when you do it's great.",
        "summary": "but when you do it's great.",
        "unixReviewTime": ts,
    }
    record.update(extra)
    return json.dumps(record)


def meta_2018(item="0700026657", title="Anno 2070", **fields):
    record = {
        "category": ["Video Games", "PC", "Games"],
        "tech1": "",
        "description": ["Build the future with Anno 2070."],
        "title": title,
        "also_buy": ["B00EFRMAN0"],
        "brand": "Ubisoft",
        "feature": [],
        "main_cat": "Video Games",
        "price": "$19.99",
        "asin": item,
        "imageURL": [],
    }
    record.update(fields)
    return json.dumps(record)


def encoded(line, encoding):
    """The JSON line with its non-ASCII characters written raw in ``encoding`` (json.dumps escapes them)."""
    return json.dumps(json.loads(line), ensure_ascii=False).encode(encoding)


GOOD_REVIEWS_2023 = [
    review_2023("U1", "P1", 5.0, 1588687728923),
    review_2023("U2", "P2", 3.0, 1588687700000),
    review_2023("U1", "P2", 1.0, 1500000000000),
    review_2023("U3", "P1", 4.0, 1588687728923),
]
GOOD_META_2023 = [
    meta_2023("P1", "Soap", features=["Smells of lavender"], store=None),
    meta_2023("P2", "Brush", description="A single description string", categories=["Beauty", "Tools"]),
]


@pytest.mark.parametrize("gz", [False, True])
def test_read_2023_canonical_tables(tmp_path, gz):
    suffix = ".jsonl.gz" if gz else ".jsonl"
    reviews = write_lines(tmp_path / f"All_Beauty{suffix}", GOOD_REVIEWS_2023, gz)
    meta = write_lines(tmp_path / f"meta_All_Beauty{suffix}", GOOD_META_2023, gz)

    tables = read_amazon_2023(reviews, meta, cache_dir=tmp_path / "cache")

    assert tables.interactions.features == INTERACTION_FEATURES
    assert tables.interactions.to_dict() == {
        "user_id": ["U1", "U2", "U1", "U3"],
        "item_id": ["P1", "P2", "P2", "P1"],
        "timestamp": [1588687728, 1588687700, 1500000000, 1588687728],
        "rating": [5.0, 3.0, 1.0, 4.0],
    }
    assert tables.items.features == datasets.Features(
        {
            "item_id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "store": datasets.Value("string"),
            "categories": datasets.List(datasets.Value("string")),
            "features": datasets.List(datasets.Value("string")),
            "description": datasets.List(datasets.Value("string")),
        }
    )
    assert tables.items.to_list() == [
        {
            "item_id": "P1",
            "title": "Soap",
            "store": "",
            "categories": [],
            "features": ["Smells of lavender"],
            "description": [],
        },
        {
            "item_id": "P2",
            "title": "Brush",
            "store": "Howard Products",
            "categories": ["Beauty", "Tools"],
            "features": [],
            "description": ["A single description string"],
        },
    ]
    assert tables.skipped == {}
    assert tables.name == "amazon2023-All_Beauty"
    # The review text is not kept, and the tables live on disk, memory-mapped.
    assert "text" not in tables.interactions.column_names
    assert tables.interactions.cache_files and tables.items.cache_files


@pytest.mark.parametrize("policy", ["error", "skip"])
@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_at_the_start_is_no_bad_record(tmp_path, gz, policy):
    """Some exporters start a UTF-8 file with a byte-order mark: the file is read as utf-8-sig, so its first row is
    kept (not an invalid_json error, not a counted skip)."""
    suffix = ".jsonl.gz" if gz else ".jsonl"

    def with_bom(lines):
        return [b"\xef\xbb\xbf" + lines[0].encode(), *lines[1:]]

    reviews = write_lines(tmp_path / f"All_Beauty{suffix}", with_bom(GOOD_REVIEWS_2023), gz)
    meta = write_lines(tmp_path / f"meta_All_Beauty{suffix}", with_bom(GOOD_META_2023), gz)

    tables = read_amazon_2023(reviews, meta, on_bad_record=policy, cache_dir=tmp_path / "cache")

    assert tables.interactions["user_id"] == ["U1", "U2", "U1", "U3"]
    assert tables.items["item_id"] == ["P1", "P2"]
    assert tables.skipped == {}


@pytest.mark.parametrize("gz", [False, True])
def test_read_2018_canonical_tables(tmp_path, gz):
    suffix = ".json.gz" if gz else ".json"
    reviews = write_lines(
        tmp_path / f"Video_Games{suffix}",
        [review_2018("A1", "0700026657", 5.0, 1441065600), review_2018("A2", "0700099867", 2.0, 1402272000)],
        gz,
    )
    meta = write_lines(
        tmp_path / f"meta_Video_Games{suffix}",
        [
            meta_2018("0700026657", "Anno 2070"),
            meta_2018("0700099867", "Dirt 3", description="Race anywhere.", brand=None, category=None),
        ],
        gz,
    )

    tables = read_amazon_2018(reviews, meta, cache_dir=tmp_path / "cache")

    assert tables.interactions.features == INTERACTION_FEATURES
    assert tables.interactions.to_dict() == {
        "user_id": ["A1", "A2"],
        "item_id": ["0700026657", "0700099867"],
        "timestamp": [1441065600, 1402272000],
        "rating": [5.0, 2.0],
    }
    assert tables.items.column_names == ["item_id", "title", "brand", "categories", "description"]
    assert tables.items.to_list() == [
        {
            "item_id": "0700026657",
            "title": "Anno 2070",
            "brand": "Ubisoft",
            "categories": ["Video Games", "PC", "Games"],
            "description": ["Build the future with Anno 2070."],
        },
        {"item_id": "0700099867", "title": "Dirt 3", "brand": "", "categories": [], "description": ["Race anywhere."]},
    ]
    assert tables.skipped == {}


BAD_REVIEW_LINES = [
    pytest.param(b'{"user_id": "U9", "parent_asin": "P1", "rating": 5.0,', "invalid_json", "invalid JSON", id="json"),
    pytest.param(b'["U9", "P1", 5.0, 1588687728923]', "invalid_json", "expected a JSON object", id="not-object"),
    pytest.param(encoded(review_2023("Ren\xe9e", "P1"), "latin-1"), "non_utf8", "not UTF-8", id="latin-1"),
    pytest.param(review_2023(user=None), "missing_field", "'user_id'", id="no-user"),
    pytest.param(review_2023(user={"id": "U9"}), "wrong_type", "'user_id'", id="user-object"),
    pytest.param(review_2023(parent_asin=None), "missing_field", "'parent_asin'", id="no-item"),
    pytest.param(review_2023(rating="five stars"), "bad_rating", "rating", id="rating-text"),
    pytest.param(review_2023(rating=None), "bad_rating", "rating", id="no-rating"),
    pytest.param(review_2023(ts=None), "bad_timestamp", "timestamp", id="no-timestamp"),
    pytest.param(review_2023(ts="last tuesday"), "bad_timestamp", "timestamp", id="timestamp-text"),
]


@pytest.mark.parametrize("bad_line, kind, fragment", BAD_REVIEW_LINES)
@pytest.mark.parametrize("gz", [False, True])
def test_bad_review_line(tmp_path, bad_line, kind, fragment, gz):
    # A blank line 2 checks that line numbers count physical lines.
    lines = [GOOD_REVIEWS_2023[0], b"", bad_line, GOOD_REVIEWS_2023[1]]
    reviews = write_lines(tmp_path / ("All_Beauty.jsonl.gz" if gz else "All_Beauty.jsonl"), lines, gz)
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023)

    with pytest.raises(DataFormatError) as info:
        read_amazon_2023(reviews, meta, cache_dir=tmp_path / "cache")
    assert info.value.path == str(reviews)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{reviews}, line 3: ")
    assert fragment in str(info.value)

    tables = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert tables.interactions["user_id"] == ["U1", "U2"]
    assert tables.skipped == {kind: 1}


BAD_META_LINES = [
    pytest.param(b"{not json}", "invalid_json", "invalid JSON", id="json"),
    pytest.param(b'"just a string"', "invalid_json", "expected a JSON object", id="not-object"),
    pytest.param(
        encoded(meta_2023("P9", "Caf\xe9 set \u2013 4 cups"), "cp1252"), "non_utf8", "not UTF-8", id="cp1252"
    ),
    pytest.param(meta_2023(None), "missing_field", "'parent_asin'", id="no-id"),
    pytest.param(meta_2023(["P9"]), "wrong_type", "'parent_asin'", id="id-list"),
    pytest.param(meta_2023("P9", features={"a": "b"}), "wrong_type", "'features'", id="features-object"),
    pytest.param(meta_2023("P9", title=["Soap"]), "wrong_type", "'title'", id="title-list"),
    pytest.param(meta_2023("P9", title=None, features=[""], description=None), "empty_item_text", "P9", id="empty"),
]


@pytest.mark.parametrize("bad_line, kind, fragment", BAD_META_LINES)
def test_bad_meta_line(tmp_path, bad_line, kind, fragment):
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", GOOD_REVIEWS_2023)
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl.gz", [GOOD_META_2023[0], bad_line, GOOD_META_2023[1]], True)

    with pytest.raises(DataFormatError) as info:
        read_amazon_2023(reviews, meta, cache_dir=tmp_path / "cache")
    assert info.value.path == str(meta)
    assert info.value.line == 2
    assert fragment in str(info.value)

    tables = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert tables.items["item_id"] == ["P1", "P2"]
    assert len(tables.interactions) == 4
    assert tables.skipped == {kind: 1}


def test_2018_bad_records_use_2018_field_names(tmp_path):
    reviews = write_lines(
        tmp_path / "Video_Games.json",
        [review_2018("A1"), review_2018(reviewerID=None), review_2018("A3", overall="n/a"), review_2018("A4")],
    )
    meta = write_lines(tmp_path / "meta_Video_Games.json", [meta_2018(asin=None), meta_2018(title="", description=[])])

    with pytest.raises(DataFormatError, match="'reviewerID'") as info:
        read_amazon_2018(reviews, meta, cache_dir=tmp_path / "cache")
    assert info.value.line == 2

    with pytest.raises(DataFormatError, match="no items could be read"):
        read_amazon_2018(reviews, meta, on_bad_record="skip", cache_dir=tmp_path / "cache")

    write_lines(meta, [meta_2018(asin=None), meta_2018(title="", description=[]), meta_2018("0700026657")])
    tables = read_amazon_2018(reviews, meta, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert tables.interactions["user_id"] == ["A1", "A4"]
    assert tables.skipped == {"missing_field": 2, "bad_rating": 1, "empty_item_text": 1}


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_duplicate_items_keep_first_and_are_counted(tmp_path, policy):
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", GOOD_REVIEWS_2023)
    meta = write_lines(
        tmp_path / "meta_All_Beauty.jsonl",
        [GOOD_META_2023[0], GOOD_META_2023[1], meta_2023("P1", "Soap, again"), meta_2023("P1", "Soap, thrice")],
    )

    tables = read_amazon_2023(reviews, meta, on_bad_record=policy, cache_dir=tmp_path / "cache")

    assert tables.items["item_id"] == ["P1", "P2"]
    assert tables.items["title"] == ["Soap", "Brush"]
    assert tables.skipped == {"duplicate_item": 2}


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_truncated_gzip_is_always_an_error(tmp_path, policy):
    lines = [review_2023(f"U{i}", f"P{i % 7}", 4.0, 1588687728923 + i) for i in range(2000)]
    reviews = write_lines(tmp_path / "All_Beauty.jsonl.gz", lines, gz=True)
    reviews.write_bytes(reviews.read_bytes()[: reviews.stat().st_size // 2])
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023)

    with pytest.raises(DataFormatError, match="truncated or corrupt") as info:
        read_amazon_2023(reviews, meta, on_bad_record=policy, cache_dir=tmp_path / "cache")
    assert info.value.path == str(reviews)


def test_missing_file(tmp_path):
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023)
    with pytest.raises(FileNotFoundError, match="All_Beauty.jsonl: no such file.*amazon-reviews-2023"):
        read_amazon_2023(tmp_path / "All_Beauty.jsonl", meta, cache_dir=tmp_path / "cache")


def test_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="on_bad_record"):
        read_amazon_2023(tmp_path / "a.jsonl", tmp_path / "b.jsonl", on_bad_record="ignore")


def test_reread_after_change_is_not_served_a_stale_cache(tmp_path):
    cache = tmp_path / "cache"
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", [GOOD_REVIEWS_2023[0], b"{oops", GOOD_REVIEWS_2023[1]])
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023)

    first = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache)
    assert first.interactions["user_id"] == ["U1", "U2"]
    assert first.skipped == {"invalid_json": 1}

    # Same file: served from the cache, with the counts of the run that built it.
    again = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache)
    assert again.interactions.cache_files == first.interactions.cache_files
    assert again.skipped == {"invalid_json": 1}

    # The cache built under "skip" must not let an "error" read pass.
    with pytest.raises(DataFormatError, match="line 2"):
        read_amazon_2023(reviews, meta, cache_dir=cache)

    write_lines(reviews, [GOOD_REVIEWS_2023[2], review_2023(user=None), b"[]", GOOD_REVIEWS_2023[3], b"\xff\xfe"])
    changed = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache)
    assert changed.interactions["user_id"] == ["U1", "U3"]
    assert changed.interactions["item_id"] == ["P2", "P1"]
    assert changed.skipped == {"missing_field": 1, "invalid_json": 1, "non_utf8": 1}

    # Same size and content but a new modification time still counts as a change.
    stat = reviews.stat()
    os.utime(reviews, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache)
    assert touched.interactions.cache_files != changed.interactions.cache_files
    assert touched.skipped == changed.skipped


def test_cache_without_its_counts_is_regenerated(tmp_path):
    cache = tmp_path / "cache"
    reviews = write_lines(tmp_path / "All_Beauty.jsonl", [GOOD_REVIEWS_2023[0], b"{oops", GOOD_REVIEWS_2023[1]])
    meta = write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023 + [meta_2023("P1")])
    assert read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache).skipped == {
        "duplicate_item": 1,
        "invalid_json": 1,
    }

    for counts in (cache / "recpipe_skipped").iterdir():
        counts.unlink()
    tables = read_amazon_2023(reviews, meta, on_bad_record="skip", cache_dir=cache)
    assert tables.skipped == {"duplicate_item": 1, "invalid_json": 1}
    assert tables.interactions["user_id"] == ["U1", "U2"]


def test_find_amazon_files_prefers_gzip(tmp_path):
    write_lines(tmp_path / "All_Beauty.jsonl", GOOD_REVIEWS_2023)
    write_lines(tmp_path / "All_Beauty.jsonl.gz", GOOD_REVIEWS_2023, gz=True)
    write_lines(tmp_path / "meta_All_Beauty.jsonl", GOOD_META_2023)

    assert find_amazon_files(tmp_path, "All_Beauty") == (
        tmp_path / "All_Beauty.jsonl.gz",
        tmp_path / "meta_All_Beauty.jsonl",
    )


def test_find_amazon_files_2018(tmp_path):
    write_lines(tmp_path / "Video_Games_5.json.gz", [review_2018()], gz=True)
    write_lines(tmp_path / "Video_Games.json", [review_2018()])
    write_lines(tmp_path / "meta_Video_Games.json.gz", [meta_2018()], gz=True)

    assert find_amazon_files(tmp_path, "Video_Games", version=2018) == (
        tmp_path / "Video_Games.json",
        tmp_path / "meta_Video_Games.json.gz",
    )
    # A 5-core review file shares the category's metadata file.
    assert find_amazon_files(tmp_path, "Video_Games_5", version=2018) == (
        tmp_path / "Video_Games_5.json.gz",
        tmp_path / "meta_Video_Games.json.gz",
    )


def test_find_amazon_files_missing_says_what_to_put_where(tmp_path):
    write_lines(tmp_path / "All_Beauty.jsonl.gz", GOOD_REVIEWS_2023, gz=True)

    with pytest.raises(FileNotFoundError) as info:
        find_amazon_files(tmp_path, "All_Beauty")
    message = str(info.value)
    assert f"missing {tmp_path / 'meta_All_Beauty.jsonl.gz'} (or meta_All_Beauty.jsonl)" in message
    assert f"{tmp_path / 'All_Beauty.jsonl.gz'} (or" not in message
    assert "https://amazon-reviews-2023.github.io/" in message
    assert f"put them in {tmp_path}/" in message

    with pytest.raises(FileNotFoundError) as info:
        find_amazon_files(tmp_path / "nowhere", "Video_Games", version=2018)
    message = str(info.value)
    assert "Video_Games.json.gz (or Video_Games.json) and " in message
    assert "meta_Video_Games.json.gz (or meta_Video_Games.json)" in message
    assert "https://nijianmo.github.io/amazon/" in message

    with pytest.raises(ValueError, match="2023 or 2018"):
        find_amazon_files(tmp_path, "All_Beauty", version=2014)
