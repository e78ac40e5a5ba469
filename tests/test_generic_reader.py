import gzip
import json
from datetime import datetime, timezone

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recpipe.data.generic import read_generic
from recpipe.data.schema import INTERACTION_FEATURES, DataFormatError

RATINGS_CSV = """userId,movieId,rating,timestamp
1,296,5.0,1147880044
1,306,3.5,1147868817
7,296,4.0,1147868828
2,1,2.5,1147879571
"""

MOVIES_CSV = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
296,Pulp Fiction (1994),Comedy|Crime|Drama|Thriller
306,"Three Colors: Red (Trois couleurs: Rouge) (1994)",Drama
"""

ML_COLUMNS = {"user_id": "userId", "item_id": "movieId"}
EXPECTED = {
    "user_id": ["1", "1", "7", "2"],
    "item_id": ["296", "306", "296", "1"],
    "timestamp": [1147880044, 1147868817, 1147868828, 1147879571],
    "rating": [5.0, 3.5, 4.0, 2.5],
}


def write(path, text: str | bytes, gz: bool = False):
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def jsonl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.mark.parametrize("name, gz", [("ratings.csv", False), ("ratings.csv.gz", True), ("ratings.tsv.gz", True)])
def test_delimited_interactions_and_items(tmp_path, name, gz):
    sep = "\t" if ".tsv" in name else ","
    interactions = write(tmp_path / name, RATINGS_CSV.replace(",", sep), gz)
    items = write(tmp_path / "movies.csv", MOVIES_CSV)

    tables = read_generic(interactions, items, columns=ML_COLUMNS, cache_dir=tmp_path / "cache")

    assert tables.interactions.features == INTERACTION_FEATURES
    assert tables.interactions.to_dict() == EXPECTED
    assert tables.items.column_names == ["item_id", "title", "genres"]
    assert tables.items["item_id"] == ["1", "296", "306"]
    assert tables.items["title"][2] == "Three Colors: Red (Trois couleurs: Rouge) (1994)"
    assert tables.skipped == {}
    assert tables.interactions.cache_files


def test_jsonl_with_milliseconds_iso_dates_and_no_rating(tmp_path):
    records = [
        {"user": "u1", "item": "i1", "ts": 1588687728923, "session": "s1"},
        {"user": "u2", "item": "i2", "ts": "2020-05-05T14:08:48Z"},
        {"user": "u1", "item": "i2", "ts": "2020-05-05 14:08:48"},
        {"user": "u3", "item": "i1", "ts": "1588687728"},
    ]
    path = write(tmp_path / "events.jsonl.gz", jsonl(records), gz=True)

    tables = read_generic(
        path, columns={"user_id": "user", "item_id": "item", "timestamp": "ts"}, cache_dir=tmp_path / "cache"
    )

    assert tables.interactions.to_dict() == {
        "user_id": ["u1", "u2", "u1", "u3"],
        "item_id": ["i1", "i2", "i2", "i1"],
        "timestamp": [1588687728, 1588687728, 1588687728, 1588687728],
        "rating": [1.0, 1.0, 1.0, 1.0],
    }
    # Without an items file, the items are the distinct item ids in order of first appearance.
    assert tables.items.to_dict() == {"item_id": ["i1", "i2"]}


def test_parquet_streams_with_row_numbers(tmp_path):
    n = 25_000  # more than one Parquet batch
    start = int(datetime(2021, 3, 1, tzinfo=timezone.utc).timestamp())
    table = pa.table(
        {
            "uid": pa.array([f"u{i % 97}" for i in range(n)]),
            "iid": pa.array([i % 13 for i in range(n)], pa.int64()),
            "when": pa.array([start + i for i in range(n)], pa.int64()).cast(pa.timestamp("s")),
            "score": pa.array([float(i % 5 + 1) for i in range(n)], pa.float32()),
            "ignored": pa.array(["x"] * n),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, row_group_size=7_000)
    columns = {"user_id": "uid", "item_id": "iid", "timestamp": "when", "rating": "score"}

    tables = read_generic(path, columns=columns, cache_dir=tmp_path / "cache")

    assert len(tables.interactions) == n
    assert tables.interactions[:3] == {
        "user_id": ["u0", "u1", "u2"],
        "item_id": ["0", "1", "2"],
        "timestamp": [1614556800, 1614556801, 1614556802],
        "rating": [1.0, 2.0, 3.0],
    }
    assert tables.interactions[n - 1]["timestamp"] == 1614556800 + n - 1

    scores = table.column("score").to_pylist()
    scores[20_001] = None
    pq.write_table(table.set_column(3, "score", pa.array(scores, pa.float32())), path, row_group_size=7_000)
    with pytest.raises(DataFormatError, match="rating") as info:
        read_generic(path, columns=columns, cache_dir=tmp_path / "cache")
    assert (info.value.path, info.value.line) == (str(path), 20_002)

    tables = read_generic(path, columns=columns, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert len(tables.interactions) == n - 1
    assert tables.skipped == {"bad_rating": 1}


# A quoted field spanning two lines (line 3-4) must not shift the line numbers that follow.
MESSY_CSV = b"""user,item,stars,time
u1,i1,4,1600000000
u2,"i2
with a newline",5,1600000001
u3,i3,five,1600000002
,i4,3,1600000003
u5,i5,3,
u6,i6,3,1600000005,extra
u\xe97,i7,3,1600000006
u8,i8,2,1600000007
"""


@pytest.mark.parametrize(
    "line, kind, fragment",
    [
        (5, "bad_rating", "rating"),
        (6, "missing_field", "'user'"),
        (7, "bad_timestamp", "timestamp"),
        (8, "malformed_row", "expected 4 fields, got 5"),
        (9, "non_utf8", "not UTF-8"),
    ],
)
def test_csv_bad_rows_name_the_line(tmp_path, line, kind, fragment):
    lines = MESSY_CSV.splitlines(keepends=True)
    keep = [*lines[:4], lines[line - 1], lines[-1]]  # header, two good rows (one multi-line), the bad one, a good one
    path = write(tmp_path / "ratings.csv", b"".join(keep))
    columns = {"user_id": "user", "item_id": "item", "rating": "stars", "timestamp": "time"}

    with pytest.raises(DataFormatError) as info:
        read_generic(path, columns=columns, cache_dir=tmp_path / "cache")
    assert (info.value.path, info.value.line) == (str(path), 5)
    assert str(info.value).startswith(f"{path}, line 5: ")
    assert fragment in str(info.value)

    tables = read_generic(path, columns=columns, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert tables.interactions["user_id"] == ["u1", "u2", "u8"]
    assert tables.interactions["item_id"][1] == "i2\nwith a newline"
    assert tables.skipped == {kind: 1}


def test_csv_all_bad_rows_counted(tmp_path):
    path = write(tmp_path / "ratings.csv", MESSY_CSV)
    columns = {"user_id": "user", "item_id": "item", "rating": "stars", "timestamp": "time"}

    tables = read_generic(path, columns=columns, on_bad_record="skip", cache_dir=tmp_path / "cache")

    assert tables.interactions["user_id"] == ["u1", "u2", "u8"]
    assert tables.skipped == {
        "bad_rating": 1,
        "bad_timestamp": 1,
        "malformed_row": 1,
        "missing_field": 1,
        "non_utf8": 1,
    }


def test_csv_unclosed_quote_is_malformed(tmp_path):
    path = write(tmp_path / "ratings.csv", 'user_id,item_id,timestamp\nu1,i1,1600000000\nu2,"i2,1600000001\n')
    with pytest.raises(DataFormatError, match="malformed") as info:
        read_generic(path, cache_dir=tmp_path / "cache")
    assert info.value.line == 3


def test_jsonl_bad_lines(tmp_path):
    good = [{"user_id": "u1", "item_id": "i1", "timestamp": 1600000000, "rating": 4}]
    lines = [
        json.dumps(good[0]).encode(),
        b'{"user_id": "u2", "item_id": "i2", "timestamp": 1600000001, "rating": 4',
        b"42",
        json.dumps({"user_id": "u3", "item_id": "i3", "timestamp": 1600000002, "rating": True}).encode(),
        json.dumps({"user_id": "u4", "item_id": ["i4"], "timestamp": 1600000003, "rating": 1}).encode(),
        json.dumps({"user_id": "u5", "item_id": "i5", "timestamp": -5, "rating": 1}).encode(),
        json.dumps({"user_id": "u6", "item_id": "i6", "timestamp": 1600000005, "rating": 2}).encode(),
    ]
    path = write(tmp_path / "events.json", b"\n".join(lines) + b"\n")

    with pytest.raises(DataFormatError, match="invalid JSON") as info:
        read_generic(path, cache_dir=tmp_path / "cache")
    assert (info.value.path, info.value.line) == (str(path), 2)

    tables = read_generic(path, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert tables.interactions.to_dict() == {
        "user_id": ["u1", "u6"],
        "item_id": ["i1", "i6"],
        "timestamp": [1600000000, 1600000005],
        "rating": [4.0, 2.0],
    }
    assert tables.skipped == {"invalid_json": 2, "bad_rating": 1, "wrong_type": 1, "bad_timestamp": 1}


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.csv"])
def test_a_byte_order_mark_at_the_start_keeps_the_first_row(tmp_path, name):
    rows = [("u1", "i1", 1600000000), ("u2", "i2", 1600000001)]
    if name.endswith(".csv"):
        body = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    else:
        body = jsonl({"user_id": u, "item_id": i, "timestamp": t} for u, i, t in rows)
    path = write(tmp_path / name, "\ufeff" + body, gz=name.endswith(".gz"))
    items = write(tmp_path / "items.jsonl", "\ufeff" + jsonl([{"item_id": "i1", "title": "One"}, {"item_id": "i2"}]))

    tables = read_generic(path, items, on_bad_record="skip", cache_dir=tmp_path / "cache")

    assert tables.interactions["user_id"] == ["u1", "u2"]
    assert tables.items.column_names == ["item_id", "title"]  # the first key is "item_id", not "\ufeffitem_id"
    assert tables.items["item_id"] == ["i1"]
    assert tables.skipped == {"empty_item_text": 1}  # i2's, not the first row's


def test_items_jsonl_lists_fields_duplicates_and_empty_text(tmp_path):
    interactions = write(tmp_path / "ratings.csv", RATINGS_CSV)
    items = [
        {"movieId": 296, "title": "Pulp Fiction (1994)", "genres": ["Crime", "Drama"], "meta": {"year": 1994}},
        {"movieId": 1, "title": "Toy Story (1995)", "genres": "Animation", "meta": {}},
        {"movieId": 296, "title": "Pulp Fiction, again", "genres": []},
        {"movieId": 306, "title": None, "genres": None},
        {"movieId": 307, "title": "Three Colors: Blue (1993)", "genres": None, "year": 1993},
    ]
    path = write(tmp_path / "movies.jsonl", jsonl(items))

    with pytest.raises(DataFormatError, match="no text") as info:
        read_generic(interactions, path, columns=ML_COLUMNS, cache_dir=tmp_path / "cache")
    assert info.value.line == 4

    tables = read_generic(interactions, path, columns=ML_COLUMNS, on_bad_record="skip", cache_dir=tmp_path / "cache")
    # Objects ("meta") are not text, so they are not among the default fields.
    assert tables.items.features == datasets.Features(
        {
            "item_id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "genres": datasets.List(datasets.Value("string")),
            "year": datasets.Value("string"),
        }
    )
    assert tables.items.to_list() == [
        {"item_id": "296", "title": "Pulp Fiction (1994)", "genres": ["Crime", "Drama"], "year": ""},
        {"item_id": "1", "title": "Toy Story (1995)", "genres": ["Animation"], "year": ""},
        {"item_id": "307", "title": "Three Colors: Blue (1993)", "genres": [], "year": "1993"},
    ]
    assert tables.skipped == {"duplicate_item": 1, "empty_item_text": 1}

    chosen = read_generic(
        interactions,
        path,
        columns=ML_COLUMNS,
        item_text_fields=["title"],
        on_bad_record="skip",
        cache_dir=tmp_path / "cache",
    )
    assert chosen.items.column_names == ["item_id", "title"]
    assert chosen.items["item_id"] == ["296", "1", "307"]


def test_items_parquet_and_csv_text_fields(tmp_path):
    interactions = write(tmp_path / "ratings.csv", RATINGS_CSV)
    table = pa.table(
        {
            "movieId": pa.array([1, 296], pa.int64()),
            "title": ["Toy Story (1995)", "Pulp Fiction (1994)"],
            "genres": pa.array([["Animation"], None], pa.list_(pa.string())),
            "budget": pa.array([30.0, 8.5]),
            "poster": pa.array([{"w": 1}, {"w": 2}]),
        }
    )
    pq.write_table(table, tmp_path / "movies.parquet")

    tables = read_generic(interactions, tmp_path / "movies.parquet", columns=ML_COLUMNS, cache_dir=tmp_path / "c")

    assert tables.items.to_list() == [
        {"item_id": "1", "title": "Toy Story (1995)", "genres": ["Animation"], "budget": "30.0"},
        {"item_id": "296", "title": "Pulp Fiction (1994)", "genres": [], "budget": "8.5"},
    ]

    with pytest.raises(DataFormatError, match="'plot'.*item_text_fields"):
        read_generic(
            interactions, write(tmp_path / "m.csv", MOVIES_CSV), columns=ML_COLUMNS, item_text_fields=["plot"]
        )


def test_missing_and_misnamed_columns(tmp_path):
    path = write(tmp_path / "ratings.csv", RATINGS_CSV)

    with pytest.raises(DataFormatError, match="no column 'user_id' for user_id.*'userId'") as info:
        read_generic(path, cache_dir=tmp_path / "cache")
    assert (info.value.path, info.value.line) == (str(path), 1)

    with pytest.raises(DataFormatError, match="no column 'stars' for rating"):
        read_generic(path, columns={**ML_COLUMNS, "rating": "stars"}, cache_dir=tmp_path / "cache")

    with pytest.raises(ValueError, match="unknown canonical names \\['user'\\]"):
        read_generic(path, columns={"user": "userId"})

    with pytest.raises(ValueError, match="unsupported file type"):
        read_generic(write(tmp_path / "ratings.xlsx", b""))

    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_generic(tmp_path / "nope.csv")

    with pytest.raises(DataFormatError, match="no interactions could be read"):
        read_generic(write(tmp_path / "empty.csv", "user_id,item_id,timestamp\n"), cache_dir=tmp_path / "cache")

    # A rating column that is neither mapped nor present gives 1.0; a byte-order mark is not part of the header.
    no_rating = write(tmp_path / "implicit.csv", "\ufeffuser_id,item_id,timestamp\nu1,i1,1600000000\n")
    assert read_generic(no_rating, cache_dir=tmp_path / "cache").interactions["rating"] == [1.0]


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_truncated_gzip_csv(tmp_path, policy):
    body = "user_id,item_id,timestamp\n" + "".join(f"u{i},i{i % 50},{1600000000 + i}\n" for i in range(20_000))
    path = write(tmp_path / "ratings.csv.gz", body, gz=True)
    path.write_bytes(path.read_bytes()[:-200])

    with pytest.raises(DataFormatError, match="truncated or corrupt") as info:
        read_generic(path, on_bad_record=policy, cache_dir=tmp_path / "cache")
    assert info.value.path == str(path)


def test_reread_after_change(tmp_path):
    path = write(tmp_path / "ratings.csv", "user_id,item_id,timestamp\nu1,i1,1600000000\nu2,i2,oops\n")
    first = read_generic(path, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert first.interactions["user_id"] == ["u1"]
    assert first.skipped == {"bad_timestamp": 1}
    assert read_generic(path, on_bad_record="skip", cache_dir=tmp_path / "cache").skipped == {"bad_timestamp": 1}

    write(path, "user_id,item_id,timestamp\nu3,i3,1600000003\nu4,,1600000004\nu5,i5,1600000005\n")
    changed = read_generic(path, on_bad_record="skip", cache_dir=tmp_path / "cache")
    assert changed.interactions["user_id"] == ["u3", "u5"]
    assert changed.skipped == {"missing_field": 1}
    assert changed.items["item_id"] == ["i3", "i5"]
