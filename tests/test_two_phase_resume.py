"""The two-phase schedule (``frozen_encoder_steps``) of the ``make train`` recipe, with the hybrid's ``id_dropout``
and MLM on a masked copy: a run killed with SIGKILL in either phase resumes to the same metrics as an uninterrupted
run."""

import json

import pytest
import yaml
from helpers import kill_once_written, recipe, train_process


def two_phase_recipe(tmp_path, tiny_model_dir, prepared_dir, output_dir):
    path = recipe(tmp_path, tiny_model_dir, prepared_dir, output_dir)
    config = yaml.safe_load(path.read_text())
    config.update(frozen_encoder_steps=30, use_item_ids=True, id_dropout=0.5, mlm_on_copy=True, save_steps=10)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("kill_after", [20, 40])  # in the cached-vector phase; in the adapter phase
def test_a_two_phase_run_killed_in_either_phase_resumes_exactly(tiny_model_dir, prepared_dir, tmp_path, kill_after):
    whole = tmp_path / "whole"
    assert train_process(two_phase_recipe(tmp_path, tiny_model_dir, prepared_dir, whole)).wait(timeout=600) == 0

    broken = tmp_path / "broken"
    config = two_phase_recipe(tmp_path, tiny_model_dir, prepared_dir, broken)
    kill_once_written(train_process(config), broken / f"checkpoint-{kill_after}")
    assert not (broken / "test_results.json").exists()
    assert train_process(config).wait(timeout=600) == 0

    assert json.loads((broken / "test_results.json").read_text()) == json.loads(
        (whole / "test_results.json").read_text()
    )
    logs = json.loads((broken / "trainer_state.json").read_text())["log_history"]
    assert any("mlm_loss" in h for h in logs) and not any("mlm_loss" in h for h in logs if h["step"] <= 30)
