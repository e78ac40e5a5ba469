"""Recipes parse; flags override the YAML; unknown keys are errors; the env block applies; plots get written."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from recpipe.parser import CTR_DATACLASSES, RecipeParser
from recpipe.report import write_report

RECIPES = sorted(Path(__file__).resolve().parent.parent.glob("recipes/*/config_*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_parses(path, monkeypatch):
    for name in ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_TAGS"):
        monkeypatch.delenv(name, raising=False)
    parser = RecipeParser(CTR_DATACLASSES) if path.parent.name == "ctr" else RecipeParser()
    data_args, model_args, training_args = parser.parse_recipe(["--config", str(path)])
    best = ("eval_auc", "auc") if path.parent.name == "ctr" else ("eval_ndcg@10", "ndcg@10")
    assert training_args.metric_for_best_model in best
    assert training_args.output_dir.startswith("outputs/")
    assert model_args.peft_type in ("lora", "adalora", "ia3", "none")
    # W&B on by default, labelled for comparison: run name, project, group and tags from the recipe
    assert training_args.report_to == ["wandb"]
    assert training_args.run_name == os.path.basename(training_args.output_dir)
    assert os.environ["WANDB_PROJECT"] == "recpipe"
    assert os.environ["WANDB_RUN_GROUP"].startswith(data_args.dataset)
    assert data_args.dataset in os.environ["WANDB_TAGS"].split(",")


def test_flags_override_yaml_and_unknown_keys_fail(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: out\nmax_steps: 7\nmlm_weight: 0.3\nlora_r: 4\nenv:\n  RECPIPE_TEST_ENV: hello\n")
    data_args, model_args, training_args = RecipeParser().parse_recipe(
        ["--config", str(recipe), "--mlm_weight", "0.9", "--use_item_ids", "true"]
    )
    assert training_args.max_steps == 7 and training_args.mlm_weight == 0.9
    assert model_args.lora_r == 4 and model_args.use_item_ids is True
    assert os.environ["RECPIPE_TEST_ENV"] == "hello"
    os.environ["RECPIPE_TEST_ENV"] = "from the shell"  # a variable set in the shell wins over the recipe's
    recipe.write_text("output_dir: out\nenv:\n  RECPIPE_TEST_ENV: hello\n")
    RecipeParser().parse_recipe(["--config", str(recipe)])
    assert os.environ["RECPIPE_TEST_ENV"] == "from the shell"
    recipe.write_text("output_dir: out\nmlm_wieght: 0.3\n")
    with pytest.raises(ValueError, match="unknown keys \\['mlm_wieght'\\]"):
        RecipeParser().parse_recipe(["--config", str(recipe)])


def test_encoder_learning_rate_gets_its_own_param_groups(tiny_model_dir, tmp_path):
    from helpers import make_trainer, model_args

    trainer, *_ = make_trainer(
        tiny_model_dir, tmp_path, margs=model_args(tiny_model_dir, peft_type="none"), encoder_learning_rate=1e-5
    )
    optimizer = trainer.create_optimizer()
    lrs = {group["lr"] for group in optimizer.param_groups}
    assert lrs == {1e-5, trainer.args.learning_rate}
    encoder_params = {id(p) for p in trainer.model.encoder.parameters()}
    for group in optimizer.param_groups:
        in_encoder = {id(p) in encoder_params for p in group["params"]}
        assert in_encoder == {group["lr"] == 1e-5}

    # FSDP builds the optimizer on the wrapped model, whose names gain "_fsdp_wrapped_module.": same groups
    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._fsdp_wrapped_module = inner

    trainer.optimizer = None
    wrapped = trainer.create_optimizer(Wrapped(trainer.model))
    assert [(g["lr"], len(g["params"])) for g in wrapped.param_groups] == [
        (g["lr"], len(g["params"])) for g in optimizer.param_groups
    ]


def test_report_writes_plots(tmp_path):
    history = [{"step": s, "loss": 3 - s / 10, "rec_loss": 2.5 - s / 10, "mlm_loss": 0.5} for s in range(1, 6)]
    history += [{"step": 5, "eval_ndcg@10": 0.1, "eval_recall@10": 0.2}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (tmp_path / "test_results.json").write_text(json.dumps({"test_ndcg@5": 0.1, "test_ndcg@10": 0.12}))
    paths = write_report(tmp_path)
    assert [p.name for p in paths] == ["training_curves.png", "metrics_at_k.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        write_report(tmp_path / "missing")


def test_sweep_files_name_real_recipe_fields():
    import yaml

    from recpipe.parser import DATACLASSES

    fields = {f.name for cls in DATACLASSES for f in dataclasses.fields(cls)}
    sweeps = sorted(Path(__file__).resolve().parent.parent.glob("recipes/sweeps/*.yaml"))
    assert sweeps
    for path in sweeps:
        sweep = yaml.safe_load(path.read_text())
        assert sweep["method"] in ("grid", "random", "bayes")
        assert set(sweep["parameters"]) <= fields, path
        assert (path.parent.parent.parent / sweep["program"]).is_file()
