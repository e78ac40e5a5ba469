import pytest
from helpers import make_tables
from helpers import random_rows as helpers_random_rows

from recpipe.data import DataFormatError, PrepareConfig, prepare
from recpipe.data.templates import TEMPLATES, front_article, render_item_text


def random_rows(n_users=40, n_items=30, per_user=12, seed=0):
    """This module's default: few distinct timestamps (0-49), so many ties."""
    return helpers_random_rows(n_users=n_users, per_user=per_user, n_items=n_items, seed=seed, max_time=50)


def test_leave_one_out_invariants():
    rows = random_rows()
    dd, stats = prepare(make_tables(rows), PrepareConfig(min_user_interactions=1, min_item_interactions=1))
    id_of = dict(zip(dd["items"]["item_index"], dd["items"]["item_id"]))
    order = {}  # per user: the (timestamp, row) order of item ids
    for row_no, (u, i, t, _) in enumerate(rows):
        order.setdefault(u, []).append((t, row_no, i))
    train = {r["user_id"]: r["item_ids"] for r in dd["train"]}
    for valid, test in zip(dd["valid"], dd["test"]):
        user = test["user_id"]
        assert valid["user_id"] == user
        chrono = [i for _, _, i in sorted(order[user])]
        assert id_of[test["target"]] == chrono[-1]  # the latest
        assert id_of[valid["target"]] == chrono[-2]  # the second latest
        assert [id_of[i] for i in train[user]] == chrono[:-2]
        assert test["target"] not in test["history"] and valid["target"] not in valid["history"]
        assert test["history"][-1] == valid["target"]  # the test input is everything before the test target
        # no interaction in two splits
        assert valid["target"] not in train[user] and test["target"] not in train[user]
        assert set(test["known_items"]) == set(train[user]) | {valid["target"]}
    assert stats["splits"]["train_interactions"] == len(rows) - 2 * len(dd["test"])


def test_tie_break_keeps_file_order():
    rows = [("u", f"i{k}", 100, 5.0) for k in range(5)]
    dd, stats = prepare(make_tables(rows), PrepareConfig(min_user_interactions=1, min_item_interactions=1))
    id_of = dict(zip(dd["items"]["item_index"], dd["items"]["item_id"]))
    assert id_of[dd["test"][0]["target"]] == "i4"
    assert id_of[dd["valid"][0]["target"]] == "i3"
    assert "row order" in stats["tie_break"]


def test_k_core_is_iterative_and_counted():
    # u3 has 2 interactions; dropping it leaves item "c" with 1 user, which then leaves u1 with 1 interaction.
    rows = [("u1", "a", 1, 5.0), ("u1", "c", 2, 5.0), ("u2", "a", 1, 5.0), ("u2", "b", 2, 5.0)]
    rows += [("u3", "c", 1, 5.0), ("u4", "a", 1, 5.0), ("u4", "b", 2, 5.0), ("u5", "a", 3, 5.0), ("u5", "b", 4, 5.0)]
    dd, stats = prepare(make_tables(rows), PrepareConfig(min_user_interactions=2, min_item_interactions=2))
    assert sorted(dd["items"]["item_id"]) == ["a", "b"]
    assert stats["filtered"]["users"] == 3  # u2, u4, u5
    assert stats["filtered_out"]["k_core"] == 3
    with pytest.raises(DataFormatError, match="leaves no interactions"):
        prepare(make_tables(rows), PrepareConfig(min_user_interactions=50))


def test_duplicates_threshold_and_missing_metadata():
    rows = random_rows(n_users=10, per_user=8)
    rows += [rows[0], rows[1]]  # exact duplicates
    rows += [("u0", "ghost", 999, 5.0)]
    tables = make_tables(rows, item_ids=sorted({r[1] for r in rows} - {"ghost"}))
    with pytest.raises(DataFormatError, match="without metadata"):
        prepare(tables, PrepareConfig(min_user_interactions=1, min_item_interactions=1))
    cfg = PrepareConfig(min_user_interactions=1, min_item_interactions=1, on_bad_record="skip", rating_threshold=4)
    dd, stats = prepare(tables, cfg)
    assert stats["filtered_out"]["duplicate_interactions"] == 2
    assert stats["filtered_out"]["no_item_metadata"] == 1
    low = sum(1 for r in rows[:-3] if r[3] < 4)
    assert stats["filtered_out"]["below_rating_threshold"] == low
    assert stats["filtered"]["interactions"] == len(rows) - 3 - low


def test_temporal_split_respects_cutoffs():
    rows = random_rows(n_users=30, per_user=10, seed=3)
    rows = [(u, i, t * 1000 + k, r) for k, (u, i, t, r) in enumerate(rows)]  # distinct times
    cfg = PrepareConfig(min_user_interactions=1, min_item_interactions=1, split="temporal")
    dd, stats = prepare(make_tables(rows), cfg)
    t_valid, t_test = stats["splits"]["valid_from_timestamp"], stats["splits"]["test_from_timestamp"]
    time_of = {}
    for u, i, t, _ in rows:
        time_of[(u, i)] = t
    id_of = dict(zip(dd["items"]["item_index"], dd["items"]["item_id"]))
    for split, lo, hi in (("valid", t_valid, t_test), ("test", t_test, float("inf"))):
        assert len(dd[split]) > 0
        for ex in dd[split]:
            t = time_of[(ex["user_id"], id_of[ex["target"]])]
            assert lo <= t < hi
            assert all(time_of[(ex["user_id"], id_of[h])] < t for h in ex["history"])
    for ex in dd["train"]:
        assert all(time_of[(ex["user_id"], id_of[i])] < t_valid for i in ex["item_ids"])


def test_history_is_truncated_to_max_history():
    rows = [("u", f"i{k}", k, 5.0) for k in range(30)]
    dd, _ = prepare(make_tables(rows), PrepareConfig(min_user_interactions=1, min_item_interactions=1, max_history=5))
    assert len(dd["test"][0]["history"]) == 5
    assert len(dd["test"][0]["known_items"]) == 29


def test_item_text_template():
    assert front_article("Usual Suspects, The (1995)") == "The Usual Suspects (1995)"
    assert front_article("Heat (1995)") == "Heat (1995)"
    text = render_item_text(
        {"title": "Toy Story (1995)", "genres": ["Animation", "Children's", "Comedy"]}, TEMPLATES["movielens"]
    )
    assert text == "Title: Toy Story (1995). Genres: Animation, Children's, Comedy."
    amazon = render_item_text(
        {"title": "Pen", "store": None, "categories": [], "features": ["blue"], "description": ["word " * 200]},
        TEMPLATES["amazon2023"],
    )
    assert amazon.startswith("Title: Pen. Features: blue. Description: word")
    assert len(amazon) < 360 and "Store" not in amazon


def test_cold_start_split_targets_never_occur_in_training():
    rows = random_rows(n_users=60, n_items=40, per_user=15, seed=5)
    cfg = PrepareConfig(min_user_interactions=1, min_item_interactions=1, cold_item_fraction=0.2)
    dd, stats = prepare(make_tables(rows), cfg)
    cold_targets = set(dd["test_cold"]["target"])
    assert len(dd["test_cold"]) > 20 and stats["splits"]["cold_items"] == 8
    seen = {i for seq in dd["train"]["item_ids"] for i in seq}
    seen |= {i for split in ("valid", "test") for h in dd[split]["history"] for i in h}
    seen |= set(dd["valid"]["target"]) | set(dd["test"]["target"])
    assert not cold_targets & seen  # never in training, nor in any warm input or target
    for ex in dd["test_cold"]:
        assert ex["history"] and not set(ex["history"]) & cold_targets
    again, _ = prepare(make_tables(rows), cfg)
    assert list(again["test_cold"]["target"]) == list(dd["test_cold"]["target"])  # seeded


def test_prepared_data_is_current_only_for_the_same_config_and_source(tmp_path):
    """One rule for `recpipe data prepare` and for training: a changed data_dir (or config) means stale data."""
    from recpipe.data import current_stats, source_key

    cfg = PrepareConfig(min_user_interactions=1, min_item_interactions=1)
    source = source_key("movielens-100k", tmp_path / "raw")
    prepare(make_tables(random_rows()), cfg, tmp_path / "out", source=source)
    assert current_stats(tmp_path / "out", cfg, source)["source"] == source
    assert current_stats(tmp_path / "out", cfg, source_key("movielens-100k", tmp_path / "other")) is None
    assert current_stats(tmp_path / "out", PrepareConfig(min_user_interactions=1), source) is None
    assert current_stats(tmp_path / "missing", cfg, source) is None


def test_items_without_a_text_column_stop_before_anything_is_written(tmp_path):
    """Generic items named by a column the template does not read (``name``, not ``title``) would make every item
    text empty: an error naming the file and its columns, before any output."""
    from recpipe.cli import main as cli

    rows = random_rows(n_users=10, n_items=8, per_user=6)
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t, _ in rows))
    items = tmp_path / "items.csv"
    items.write_text("item_id,name\n" + "".join(f"i{k},Thing {k}\n" for k in range(8)))
    out = tmp_path / "prepared"
    args = ["data", "prepare", "--dataset", "generic", "--interactions", str(clicks), "--items", str(items)]
    args += ["--output-dir", str(out), "--min_item_interactions", "1", "--min_user_interactions", "1"]
    auto = list(args)
    args += ["--template", "movielens"]  # generic data defaults to `auto`, which reads every column (`name` too)
    with pytest.raises(
        DataFormatError, match=r"items\.csv: no item text: .* \['title', 'genres'\].*\['item_id', 'name'\]"
    ):
        from recpipe.data import load_source

        tables = load_source("generic", interactions_path=clicks, items_path=items, cache_dir=tmp_path / "cache")
        prepare(tables, PrepareConfig(min_user_interactions=1, min_item_interactions=1), out)
    assert not out.exists()
    assert cli(args) == 2 and not out.exists()
    assert cli(auto) == 0 and (out / "stats.json").is_file()


def test_a_catalogue_without_text_saves_and_loads(tmp_path):
    """Items with no text at all (generic interactions without an items file; ID-only models need none): the empty
    pretraining corpus still saves and loads."""
    from recpipe.data import load_prepared

    tables = make_tables(random_rows(n_users=10, n_items=8, per_user=6))
    tables.items = tables.items.select_columns(["item_id"])
    _, stats = prepare(tables, PrepareConfig(min_user_interactions=1, min_item_interactions=1), tmp_path / "p")
    dd, _ = load_prepared(tmp_path / "p")
    assert len(dd["pretrain"]) == 0 and stats["filtered"]["items_without_text"] == len(dd["items"])
