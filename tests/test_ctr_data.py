import numpy as np
import pytest
from helpers import make_tables, random_rows

from recpipe.data.ctr import CTR_FEATURES, CTRConfig, build_ctr_examples


def all_examples(dd):
    return [ex for split in ("train", "valid", "test") for ex in dd[split]]


def test_label_rule_and_columns():
    rows = [("u", f"i{k}", k, float(r)) for k, r in enumerate([1, 2, 3, 4, 5, 3.5, 2.9, 3.0, 4.0, 5.0])]
    dd, _ = build_ctr_examples(make_tables(rows), CTRConfig(min_history=0, history_len=3))
    labels = {ex["item_id"]: ex["label"] for ex in all_examples(dd)}
    assert labels == {f"i{k}": int(r > 3) for k, (_, _, _, r) in enumerate(rows)}
    for split in dd.values():
        assert split.features == CTR_FEATURES
    ex = next(ex for ex in all_examples(dd) if ex["item_id"] == "i4")
    assert ex["candidate_title"] == "Movie i4" and ex["candidate_text"] == "Title: Movie i4. Genres: Drama."
    assert ex["user_id"] == "u" and ex["timestamp"] == 4
    # for integer stars, the default (rating > 3) is Amazon's rating >= 4; another threshold moves the labels
    dd, _ = build_ctr_examples(make_tables(rows), CTRConfig(min_history=0, like_threshold=4.0))
    assert {ex["item_id"] for ex in all_examples(dd) if ex["label"]} == {"i4", "i9"}


def test_history_is_the_previous_interactions_in_order():
    rows = random_rows()
    dd, _ = build_ctr_examples(make_tables(rows), CTRConfig(history_len=4, min_history=2))
    by_user = {}
    for row_no, (u, i, t, r) in enumerate(rows):
        by_user.setdefault(u, []).append((t, row_no, i, r > 3))
    chrono = {u: sorted(v) for u, v in by_user.items()}
    examples = all_examples(dd)
    assert len(examples) == len(rows) - 2 * len(chrono)
    for ex in examples:
        seq = chrono[ex["user_id"]]
        pos = next(k for k, (t, _, i, _) in enumerate(seq) if i == ex["item_id"])  # items are unique per user
        previous = seq[max(0, pos - 4) : pos]
        assert pos >= 2 and seq[pos][0] == ex["timestamp"]
        assert ex["history_titles"] == [f"Movie {i}" for _, _, i, _ in previous]
        assert ex["history_item_ids"] == [i for _, _, i, _ in previous]
        assert ex["history_liked"] == [liked for _, _, _, liked in previous]
        assert ex["label"] == int(seq[pos][3])
        assert ex["candidate_title"] not in ex["history_titles"]  # never the candidate interaction itself


def test_short_histories_are_skipped_and_counted():
    rows = [("a", f"i{k}", k, 5.0) for k in range(12)] + [("b", f"i{k}", k, 1.0) for k in range(3)]
    dd, stats = build_ctr_examples(make_tables(rows), CTRConfig(min_history=5, split_ratios=(1.0, 0.0, 0.0)))
    assert stats["skipped"]["short_history"] == 5 + 3
    assert stats["examples"] == {"train": 7, "valid": 0, "test": 0}
    assert set(dd["train"]["user_id"]) == {"a"}
    assert min(len(h) for h in dd["train"]["history_titles"]) == 5
    assert stats["users"]["input"] == 2 and stats["users"]["with_examples"] == 1
    with pytest.raises(ValueError, match="lower min_history"):
        build_ctr_examples(make_tables(rows), CTRConfig(min_history=20))


def test_split_is_chronological_8_1_1():
    rows = random_rows(n_users=30, per_user=20)
    dd, stats = build_ctr_examples(make_tables(rows), CTRConfig(history_len=3, min_history=3))
    n = len(rows) - 30 * 3  # 510 examples
    sizes = {name: len(dd[name]) for name in ("train", "valid", "test")}
    assert sizes == stats["examples"] == {"train": 408, "valid": 51, "test": 51} and n == 510
    assert max(dd["train"]["timestamp"]) <= min(dd["valid"]["timestamp"])
    assert max(dd["valid"]["timestamp"]) <= min(dd["test"]["timestamp"])
    for split in dd.values():
        assert split["timestamp"] == sorted(split["timestamp"])
    rates = stats["positive_rate"]
    assert rates["train"] == pytest.approx(np.mean(dd["train"]["label"]), abs=1e-4)
    assert stats["users"]["with_examples"] == 30


def test_timestamp_ties_keep_input_order():
    # All interactions share one timestamp: the user's order, the histories and the split follow the input rows.
    order = [3, 0, 4, 1, 2, 6, 5, 9, 8, 7]
    rows = [("u", f"i{k}", 100, 5.0 if k % 2 else 1.0) for k in order]
    dd, stats = build_ctr_examples(make_tables(rows), CTRConfig(history_len=3, min_history=0))
    examples = all_examples(dd)
    assert [ex["item_id"] for ex in examples] == [f"i{k}" for k in order]
    assert examples[5]["history_titles"] == [f"Movie i{k}" for k in order[2:5]]
    assert [ex["item_id"] for ex in dd["test"]] == [f"i{order[-1]}"]
    assert "row order" in stats["tie_break"]
    # Across users too: a later row never lands in an earlier split than an earlier row with the same timestamp.
    rows = [(f"u{k % 3}", f"i{k}", 7, float(1 + k % 5)) for k in range(20)]
    dd, _ = build_ctr_examples(make_tables(rows), CTRConfig(min_history=0))
    assert [ex["item_id"] for ex in all_examples(dd)] == [f"i{k}" for k in range(20)]


def test_few_shot_sample():
    tables = make_tables(random_rows(n_users=30, per_user=20))
    config = dict(history_len=3, min_history=3)
    full, _ = build_ctr_examples(tables, CTRConfig(**config))
    a, stats = build_ctr_examples(tables, CTRConfig(**config, train_shots=16, shot_seed=1))
    b, _ = build_ctr_examples(tables, CTRConfig(**config, train_shots=16, shot_seed=1))
    c, _ = build_ctr_examples(tables, CTRConfig(**config, train_shots=16, shot_seed=2))
    assert len(a["train"]) == 16 and stats["train_examples_before_shots"] == len(full["train"])
    assert a["train"].to_list() == b["train"].to_list()
    assert a["train"].to_list() != c["train"].to_list()
    full_train = {(ex["user_id"], ex["item_id"]) for ex in full["train"]}
    assert {(ex["user_id"], ex["item_id"]) for ex in a["train"]} <= full_train
    for split in ("valid", "test"):
        assert a[split].to_list() == full[split].to_list()
    # both classes even when the seeded draw alone would hold one: check every seed for 2 shots
    for seed in range(30):
        dd, _ = build_ctr_examples(tables, CTRConfig(**config, train_shots=2, shot_seed=seed))
        assert sorted(dd["train"]["label"]) == [0, 1]
    with pytest.raises(ValueError, match="exceeds"):
        build_ctr_examples(tables, CTRConfig(**config, train_shots=len(full["train"]) + 1))


def test_missing_ratings_raise():
    rows = [("u", f"i{k}", k, 4.0) for k in range(5)]
    rows[2] = ("u", "i2", 2, None)
    with pytest.raises(ValueError, match="no rating"):
        build_ctr_examples(make_tables(rows), CTRConfig(min_history=0))
    # implicit feedback from read_generic: every rating is 1.0
    implicit = [("u", f"i{k}", k, 1.0) for k in range(5)]
    with pytest.raises(ValueError, match="implicit feedback"):
        build_ctr_examples(make_tables(implicit), CTRConfig(min_history=0))
    tables = make_tables(implicit)
    tables.interactions = tables.interactions.remove_columns("rating")
    with pytest.raises(ValueError, match="no rating column"):
        build_ctr_examples(tables, CTRConfig(min_history=0))


def test_missing_metadata_and_duplicates_are_skipped_and_counted():
    rows = [("u", f"i{k}", k, float(1 + k % 5)) for k in range(8)] + [("u", "i3", 3, 5.0)]
    tables = make_tables(rows, item_ids=[f"i{k}" for k in range(8) if k != 5])
    dd, stats = build_ctr_examples(tables, CTRConfig(min_history=0, split_ratios=(1.0, 0.0, 0.0)))
    assert stats["skipped"]["no_item_metadata"] == 1 and stats["skipped"]["duplicate_interactions"] == 1
    assert dd["train"]["item_id"] == ["i0", "i1", "i2", "i3", "i4", "i6", "i7"]
    assert "Movie i5" not in dd["train"][-1]["history_titles"]


def test_config_checks():
    with pytest.raises(ValueError, match="sum to 1"):
        CTRConfig(split_ratios=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="train_shots"):
        CTRConfig(train_shots=0)
    with pytest.raises(ValueError, match="template"):
        CTRConfig(template="nope")
    assert CTRConfig(split_ratios=[0.7, 0.2, 0.1]).split_ratios == (0.7, 0.2, 0.1)


def write_amazon_category(folder, users=8, items=20, per_user=9):
    """An Amazon 2023 category: integer star ratings, a malformed line, and one review of a product with no
    metadata."""
    from helpers import meta_2023, review_2023, write_lines

    rng = np.random.default_rng(0)
    reviews, stars = [], {}
    for u in range(users):
        for k, i in enumerate(rng.choice(items, size=per_user, replace=False)):
            stars[(f"U{u}", f"B{i:09d}")] = rating = float(rng.integers(1, 6))
            reviews.append(review_2023(f"U{u}", f"B{i:09d}", rating, 1_600_000_000_000 + (k * users + u) * 60_000))
    reviews += ["{not json", review_2023("U0", "BNOMETA000", 5.0, 1_700_000_000_000)]
    folder.mkdir(parents=True)
    write_lines(folder / "All_Beauty.jsonl.gz", reviews, gz=True)
    write_lines(folder / "meta_All_Beauty.jsonl.gz", [meta_2023(f"B{i:09d}", f"Cream {i}") for i in range(items)])
    return stars


def test_amazon_recipe_builds_examples_with_four_stars_as_like(tmp_path):
    """The Amazon CTR recipe reads a 2023 category: like = rating >= 4, the product template, bad lines counted."""
    from pathlib import Path

    from recpipe.ctr.config import CTRDataArguments, CTRModelArguments, CTRTrainingArguments
    from recpipe.ctr.pipeline import ctr_data
    from recpipe.data.schema import DataFormatError
    from recpipe.parser import RecipeParser

    stars = write_amazon_category(tmp_path / "raw")
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ctr" / "config_encoder_amazon.yaml"
    parser = RecipeParser((CTRDataArguments, CTRModelArguments, CTRTrainingArguments))
    data_args, _, _ = parser.parse_recipe(
        ["--config", str(recipe), "--data_dir", str(tmp_path / "raw"), "--output_dir", str(tmp_path / "out")]
    )
    dd, stats = ctr_data(data_args)
    rows = all_examples(dd)
    # every user has 9 reviews and needs 5 earlier ones: 4 examples each
    assert len(rows) == 8 * 4 and stats["skipped"]["short_history"] == 8 * 5
    assert stats["skipped"]["source_records"] == {"invalid_json": 1}
    assert stats["skipped"]["no_item_metadata"] == 1
    assert {r["label"] for r in rows} == {0, 1}
    for r in rows:
        assert r["label"] == int(stars[(r["user_id"], r["item_id"])] >= 4)
        assert r["history_liked"] == [stars[(r["user_id"], h)] >= 4 for h in r["history_item_ids"]]
        assert r["candidate_text"] == f"Title: {r['candidate_title']}. Store: Howard Products."
    # the same files stop at the malformed line when bad records are not to be skipped
    data_args.on_bad_record = "error"
    with pytest.raises(DataFormatError, match="invalid JSON"):
        ctr_data(data_args)
