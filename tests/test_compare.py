"""Runs side by side without a dashboard: ``recpipe compare`` (and ``recpipe report A B``) on two tiny runs writes a
table of their test metrics and the settings that differ, and their curves overlaid."""

import csv

import pytest
from helpers import model_args, training_args

from recpipe.cli import main as cli
from recpipe.compare import compare_runs
from recpipe.configs import DataArguments
from recpipe.pipeline import run


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    from conftest import save_prepared_as_current, synthetic_prepared

    tmp = tmp_path_factory.mktemp("compare")
    prepared = save_prepared_as_current(*synthetic_prepared(), tmp / "prepared")
    metrics = {}
    for name, mlm_weight, lora_r in (("lora-a", 0.5, 4), ("lora-b", 0.0, 8)):
        args = training_args(tmp, output_dir=str(tmp / name), max_steps=4, eval_strategy="steps", eval_steps=2)
        args.mlm_weight = mlm_weight
        margs = model_args(tiny_model_dir, lora_r=lora_r)
        metrics[name] = run(DataArguments(max_history=10, prepared_dir=prepared), margs, args)
    return tmp, metrics


def test_compare_writes_a_table_of_metrics_and_differing_settings(two_runs, tmp_path):
    tmp, metrics = two_runs
    paths = compare_runs([tmp / "lora-a", tmp / "lora-b"], tmp_path / "cmp")
    assert [p.name for p in paths] == ["comparison.md", "comparison.csv", "comparison_curves.png"]
    with open(paths[1]) as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["lora-a", "lora-b"]
    for row in rows:
        assert float(row["test_ndcg@10"]) == pytest.approx(metrics[row["run"]]["test_ndcg@10"], abs=1e-4)
        assert row["steps"] == "4" and row["peft_type"] == "lora"
    assert [r["mlm_weight"] for r in rows] == ["0.5000", "0.0000"] and [r["lora_r"] for r in rows] == ["4", "8"]
    assert "seed" not in rows[0] and "output_dir" not in rows[0]  # the same in both, or not a setting
    table = paths[0].read_text()
    assert table.splitlines()[0].startswith("| run | task | test_ndcg@10") and "lora-b" in table
    assert paths[2].stat().st_size > 10_000


def test_report_of_several_runs_compares_them(two_runs, tmp_path, capsys):
    tmp, _ = two_runs
    assert cli(["report", str(tmp / "lora-a"), str(tmp / "lora-b"), "--output_dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "comparison.md").is_file() and "comparison_curves.png" in capsys.readouterr().out
    assert cli(["compare", str(tmp / "lora-a")]) == 2  # one run is no comparison
    assert "at least two" in capsys.readouterr().err
