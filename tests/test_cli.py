"""A CLI that helps: help that lists the real options, no silent default training, one flag style with the other as
an alias, contradictory flags refused before any model loads, make train following DATASET, ruff beside run
folders."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recpipe.cli import build_parser
from recpipe.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_describes_recpipe_and_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "recommenders on top of pretrained language models" in out and "compare runs." in out
    for command in ("train", "evaluate", "recommend", "serve", "score", "compare", "push-to-hub"):
        assert command in out


def test_train_help_lists_the_recipe_options(capsys):
    assert cli(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--dataset", "--peft_type", "--lora_r", "--mlm_weight", "--max_steps", "--output_dir"):
        assert flag in out, flag
    assert "data arguments" in out and "model and PEFT arguments" in out and "--max-steps" in out


def test_train_without_arguments_prints_usage_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["train"]) == 2
    err = capsys.readouterr().err
    assert "usage: recpipe train --config" in err and "recpipe train --help" in err
    assert cli(["train", "--max_steps", "5"]) == 2  # no recipe and nowhere to write
    assert "no --config and no --output_dir" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no trainer_output, no data


def test_both_flag_spellings_are_accepted():
    for spelling in ("--prepared_dir", "--prepared-dir"):
        argv = ["evaluate", "--checkpoint", "c", spelling, "p"]
        assert build_parser(argv).parse_args(argv).prepared_dir == "p"
    for spelling in ("--user_id", "--user-id"):
        argv = ["recommend", "--checkpoint", "c", spelling, "42"]
        assert build_parser(argv).parse_args(argv).user_id == "42"
    argv = ["data", "prepare", "--dataset", "generic", "--output-dir", "o", "--min_user_interactions", "2"]
    ns = build_parser(argv).parse_args(argv)
    assert ns.output_dir == "o" and ns.min_user_interactions == 2


def test_contradictory_flags_fail_before_any_model_loads(tmp_path, capsys, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("recpipe.recommender.Recommender.from_pretrained", no_load)
    (tmp_path / "recpipe_config.json").write_text("{}")
    assert cli(["recommend", "--checkpoint", str(tmp_path), "--history", "i1", "--user_id", "u1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli(["recommend", "--checkpoint", str(tmp_path)]) == 2
    assert "give --history" in capsys.readouterr().err
    assert cli(["serve", "--checkpoint", str(tmp_path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    (tmp_path / "recpipe_config.json").unlink()
    (tmp_path / "ctr_config.json").write_text("{}")
    assert cli(["recommend", "--checkpoint", str(tmp_path), "--history", "i1"]) == 2
    assert "recpipe score" in capsys.readouterr().err


def test_generic_flags_are_refused_for_other_datasets(tmp_path, capsys):
    argv = ["data", "prepare", "--dataset", "movielens-100k", "--output_dir", str(tmp_path), "--items", "x.csv"]
    assert cli(argv) == 2
    assert "for --dataset generic" in capsys.readouterr().err


def test_make_train_follows_the_dataset():
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(
        ["make", "-n", "train", "DATASET=movielens-1m"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "data prepare --dataset movielens-1m --output-dir data/prepared/movielens-1m" in out
    assert "--dataset movielens-1m --output_dir outputs/movielens-1m-lora --run_name movielens-1m-lora" in out
    assert "WANDB_RUN_GROUP=${WANDB_RUN_GROUP:-movielens-1m-retrieval}" in out
    full = subprocess.run(
        ["make", "-n", "train", "RECIPE=recipes/movielens/config_full.yaml"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "--output_dir outputs/movielens-100k-full" in full


def test_ruff_ignores_a_wandb_run_folder(tmp_path):
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.is_file():
        pytest.skip("ruff is not installed beside this Python")
    project = tmp_path / "project"
    (project / "recpipe").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    for name in ("__init__.py", "cli.py"):
        shutil.copy(ROOT / "recpipe" / name, project / "recpipe" / name)
    (project / "wandb" / "run-1" / "files").mkdir(parents=True)
    (project / "wandb" / "run-1" / "files" / "notes.py").write_text("import os\nx=1\n")  # what W&B may leave
    proc = subprocess.run([str(ruff), "check", "."], cwd=project, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_train_runs_ctr_recipes_through_the_ctr_pipeline(monkeypatch):
    calls = []
    monkeypatch.setattr("recpipe.ctr.pipeline.run_ctr", lambda *args: calls.append(("ctr", args)))
    monkeypatch.setattr("recpipe.pipeline.run", lambda *args: calls.append(("retrieval", args)))
    assert cli(["train", "--config", str(ROOT / "recipes" / "ctr" / "config_encoder.yaml"), "--use_cpu", "true"]) == 0
    assert cli(["train", "--config", str(ROOT / "recipes" / "movielens" / "config_lora.yaml"), "--bf16", "false"]) == 0
    assert [task for task, _ in calls] == ["ctr", "retrieval"]
    (data_args, model_args, training_args) = calls[0][1]
    assert model_args.model_family == "encoder" and training_args.ctr_weight == 1.0
