"""CTR checkpoints from the command line: ``recpipe evaluate`` reproduces the run's test metrics key for key,
``recpipe report`` draws the CTR curves, ``recpipe score`` gives new rows the probabilities training's code gives."""

import json

import numpy as np
import pytest
import torch
from helpers import write_movielens_100k

from recpipe.cli import main as cli
from recpipe.ctr.config import CTRDataArguments, CTRModelArguments, CTRTrainingArguments
from recpipe.ctr.features import ITEM_FEATURE, add_item_like_logodds
from recpipe.ctr.modeling import load_ctr_checkpoint
from recpipe.ctr.pipeline import collators, ctr_data, run_ctr


@pytest.fixture(scope="module")
def ctr_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctr-cli")
    write_movielens_100k(tmp / "ml")
    data_args = CTRDataArguments(data_dir=str(tmp / "ml"), item_noun="movie", max_length=128)
    margs = CTRModelArguments(
        model_family="encoder",
        model_name_or_path=tiny_model_dir,
        lora_target_modules=["query", "value"],
        history_feature=True,
        item_feature=True,
    )
    args = CTRTrainingArguments(
        output_dir=str(tmp / "out"),
        max_steps=6,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=3,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    metrics = run_ctr(data_args, margs, args)
    return tmp / "out", metrics, data_args, margs, args


def test_evaluate_reproduces_the_runs_test_metrics(ctr_run, capsys):
    out, metrics, *_ = ctr_run
    assert cli(["evaluate", "--checkpoint", str(out)]) == 0
    again = json.loads((out / "eval_test_results.json").read_text())
    saved = json.loads((out / "test_results.json").read_text())
    assert set(again) == {k for k in saved if k.startswith("test_")} and "test_auc" in again
    for key, value in again.items():
        assert value == pytest.approx(saved[key], abs=1e-6, nan_ok=True), key
    assert "test_auc" in capsys.readouterr().out


def test_report_draws_the_ctr_curves(ctr_run, capsys):
    out, *_ = ctr_run
    assert cli(["report", str(out)]) == 0
    assert "training_curves.png" in capsys.readouterr().out
    assert (out / "training_curves.png").stat().st_size > 10_000 and not (out / "metrics_at_k.png").exists()


def test_score_gives_new_rows_the_probabilities_of_training_code(ctr_run, tmp_path, capsys):
    out, _, data_args, margs, args = ctr_run
    dd, _ = add_item_like_logodds(ctr_data(data_args)[0])
    rows = dd["test"]  # 7 rows
    model, tokenizer, _ = load_ctr_checkpoint(out)
    eval_collator = collators(margs, data_args, args, tokenizer)[1]
    with torch.no_grad():
        batch = eval_collator(list(rows))
        expected = torch.sigmoid(model(**{k: v for k, v in batch.items() if k != "labels"})["logits"]).numpy()
    keep = ("user_id", "item_id", "history_titles", "history_liked", "candidate_title", "candidate_text", "label")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows))
    assert cli(["score", "--checkpoint", str(out), "--input", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "auc" in printed and f"{len(rows)} rows scored" in printed
    scored = [json.loads(line) for line in (tmp_path / "rows.scores.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in scored] == list(rows["item_id"]) and ITEM_FEATURE not in scored[0]
    assert np.allclose([r["p_like"] for r in scored], expected, atol=1e-5)


def test_score_names_a_bad_row_before_loading_the_model(ctr_run, tmp_path, capsys, monkeypatch):
    out, *_ = ctr_run

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("recpipe.ctr.scoring.load_ctr_checkpoint", no_load)
    path = tmp_path / "rows.jsonl"
    good = {"history_titles": ["w1"], "history_liked": [True], "candidate_title": "w2"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"history_titles": ["w1"], "candidate_title": "w2"}) + "\n")
    assert cli(["score", "--checkpoint", str(out), "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "history_liked" in err
