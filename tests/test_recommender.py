"""What is evaluated is what is served: CLI evaluation equals training's final numbers, the Recommender's top-K equals
the evaluation's ranking, the FAISS index equals brute force, cold-start items enter by text alone."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import model_args, training_args

from recpipe.cli import main as cli
from recpipe.configs import DataArguments
from recpipe.evaluation import item_vectors, user_vectors
from recpipe.index import ItemIndex
from recpipe.pipeline import run
from recpipe.recommender import Recommender


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    from conftest import save_prepared_as_current, synthetic_prepared

    tmp = tmp_path_factory.mktemp("trained")
    dd, stats = synthetic_prepared()
    save_prepared_as_current(dd, stats, tmp / "prepared")
    margs = model_args(tiny_model_dir, use_item_ids=True, inference_dtype="bfloat16")
    args = training_args(tmp, max_steps=120, learning_rate=2e-2)
    metrics = run(DataArguments(max_history=10, prepared_dir=str(tmp / "prepared")), margs, args)
    return tmp / "out", metrics, dd


def test_cli_evaluate_gives_the_numbers_training_logged(trained, capsys):
    out, metrics, _ = trained
    assert cli(["evaluate", "--checkpoint", str(out)]) == 0
    again = json.loads((out / "eval_test_results.json").read_text())
    assert again == metrics
    assert "test_ndcg@10" in capsys.readouterr().out


def test_recommend_agrees_with_the_evaluation_ranking(trained):
    out, _, dd = trained
    rec = Recommender.from_pretrained(out)
    table = item_vectors(rec.model, rec.tokens)
    users, targets, rows = user_vectors(rec.model, table, dd["test"])
    for u in range(5):
        example = dd["test"][int(rows[u])]
        scores = users[u] @ table.float().T
        scores[0] = -torch.inf
        scores[example["known_items"]] = -torch.inf
        expected = [rec.item_ids[i] for i in scores.topk(5).indices.tolist()]
        history = [rec.item_ids[i] for i in example["history"]]
        known = [rec.item_ids[i] for i in example["known_items"]]
        served = rec.recommend(history=history, k=5, exclude=known)
        assert [r["item_id"] for r in served] == expected
        assert served[0]["score"] == pytest.approx(float(scores.max()), abs=1e-5)
    user = dd["test"][0]["user_id"]
    by_user = rec.recommend(user_id=user, k=5)
    seen = set(rec.users[user][1])  # every item the user had
    assert len(by_user) == 5 and not seen & {rec._index_of[r["item_id"]] for r in by_user}


def test_unknown_items_and_users_get_clear_errors(trained, capsys):
    out, _, _ = trained
    assert cli(["recommend", "--checkpoint", str(out), "--history", "i1", "No Such Film (1999)"]) == 2
    err = capsys.readouterr().err
    assert "No Such Film (1999)" in err and "unknown items" in err
    assert cli(["recommend", "--checkpoint", str(out), "--user-id", "nobody"]) == 2
    assert "unknown users" in capsys.readouterr().err
    assert cli(["recommend", "--checkpoint", str(out), "--history", "i1", "w2", "--k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3  # ids and titles both resolve


@pytest.mark.parametrize("k", ["0", "-5", "ten"])
def test_k_below_one_is_refused_before_any_model_is_loaded(tmp_path, capsys, k):
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and one error line, status 2
        cli(["recommend", "--checkpoint", str(tmp_path / "no-such-checkpoint"), "--history", "i1", "--k", k])
    assert exit_info.value.code == 2
    assert "argument --k:" in capsys.readouterr().err


def test_k_below_one_is_refused_by_the_python_api(trained):
    rec = Recommender.from_pretrained(trained[0])
    for k in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="k must be a whole number >= 1"):
            rec.recommend(history=["i1"], k=k)
    assert len(rec.recommend(history=["i1"], k=np.int64(3))) == 3


def test_cold_start_item_enters_by_text(trained):
    out, _, _ = trained
    rec = Recommender.from_pretrained(out)
    top = rec.recommend(history=["i3", "i4"], k=1, exclude=None)[0]
    twin_text = rec.texts[rec._index_of[top["item_id"]]]
    rec.add_items(["new-1"], [twin_text], titles=["A brand new film"])
    ranked = rec.recommend(history=["i3", "i4"], k=rec.index.size, exclude=None)
    assert "new-1" in [r["item_id"] for r in ranked]
    assert rec.recommend(history=["new-1"], k=3)  # a new item can also be part of a history
    with pytest.raises(ValueError, match="already in the catalogue"):
        rec.add_items(["new-1"], ["x"])


def test_flat_index_equals_brute_force():
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(500, 16)).astype("float32"), rng.normal(size=(20, 16)).astype("float32")
    index = ItemIndex(16)
    index.add(items, np.arange(1, 501))
    exclude = [rng.choice(np.arange(1, 501), 7, replace=False).tolist() for _ in range(20)]
    scores, ids = index.search(queries, 10, exclude)
    brute = queries @ items.T
    for q in range(20):
        brute[q, np.array(exclude[q]) - 1] = -np.inf
    expected = np.argsort(-brute, axis=1)[:, :10] + 1
    assert (ids == expected).all()
    assert np.allclose(scores, np.take_along_axis(brute, expected - 1, 1), atol=1e-5)
    hnsw = ItemIndex(16, kind="hnsw")
    hnsw.add(items, np.arange(1, 501))
    _, approx = hnsw.search(queries, 10)
    recall = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(approx, np.argsort(-(queries @ items.T), 1)[:, :10] + 1)]
    )
    assert recall > 0.9


def test_export_writes_item_and_user_embeddings(trained, tmp_path):
    out, _, dd = trained
    assert cli(["export", "--checkpoint", str(out), "--output-dir", str(tmp_path)]) == 0
    items = pd.read_parquet(tmp_path / "item_embeddings.parquet")
    users = np.load(tmp_path / "user_embeddings.npy")
    assert list(items["item_id"]) == list(dd["items"]["item_id"])
    assert users.shape[0] == len(dd["test"]) and np.isfinite(users).all()


def test_shuffled_targets_score_at_chance(trained):
    """The guard against evaluation that sees the label: the same model, with targets shuffled across users, must
    fall to chance, while the real targets score far above it."""
    out, metrics, dd = trained
    rec = Recommender.from_pretrained(out)
    from recpipe.evaluation import evaluate_split

    rng = np.random.default_rng(0)
    test = dd["test"]
    targets = []
    for known in test["known_items"]:
        choices = sorted(set(range(1, len(rec.item_ids))) - set(known))
        targets.append(int(rng.choice(choices)))
    shuffled = test.remove_columns("target").add_column("target", targets)
    chance = np.mean([10 / (len(rec.item_ids) - 1 - len(k)) for k in test["known_items"]])
    real = evaluate_split(rec.model, test, rec.tokens, prefix="")
    fake = evaluate_split(rec.model, shuffled, rec.tokens, prefix="")
    assert real["recall@10"] > chance + 0.1, (real["recall@10"], chance)
    assert abs(fake["recall@10"] - chance) < 0.15, (fake["recall@10"], chance)
