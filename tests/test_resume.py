"""A run killed with SIGKILL mid-training and resumed ends with the same metrics as an uninterrupted run; a rerun into
the same output folder resumes only with the same settings (recpipe.run_settings)."""

import json

import pytest
from helpers import kill_once_written, recipe, train_process


@pytest.mark.slow
@pytest.mark.parametrize(
    "save_item_cache, sparse",
    [(True, False), (False, False), (True, True)],
    ids=["cache-saved", "cache-re-encoded", "sparse-id-updates"],
)
def test_sigkill_and_resume_gives_the_same_metrics(tiny_model_dir, prepared_dir, tmp_path, save_item_cache, sparse):
    options = {"save_item_cache": save_item_cache}
    if sparse:  # the row-wise optimizer's state is saved and restored like AdamW's
        options.update(use_item_ids=True, negatives="sampled", num_negatives=16, sparse_id_updates=True)
    whole = tmp_path / "whole"
    assert train_process(recipe(tmp_path, tiny_model_dir, prepared_dir, whole, **options)).wait(timeout=600) == 0
    assert (whole / "checkpoint-20" / "text_cache.safetensors").is_file() == save_item_cache

    broken = tmp_path / "broken"
    config = recipe(tmp_path, tiny_model_dir, prepared_dir, broken, **options)
    kill_once_written(train_process(config), broken / "checkpoint-20")
    assert not (broken / "test_results.json").exists()
    # a kill while a checkpoint is being written leaves a folder with weights but no trainer state: skipped
    half_written = broken / "checkpoint-59"
    half_written.mkdir(exist_ok=True)
    (half_written / "recpipe_weights.safetensors").write_bytes(b"\x00" * 100)
    assert train_process(config).wait(timeout=600) == 0  # resumes from the last complete checkpoint

    expected = json.loads((whole / "test_results.json").read_text())
    resumed = json.loads((broken / "test_results.json").read_text())
    assert resumed == expected
    state = json.loads((broken / "trainer_state.json").read_text())
    assert state["global_step"] == 60


def test_last_complete_checkpoint_skips_folders_written_halfway(tmp_path):
    from recpipe.checkpointing import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "missing") is None
    assert last_complete_checkpoint(tmp_path) is None
    for step, state in [(5, "{}"), (20, '{"global_step": 20}'), (40, None), (60, '{"glob')]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-99.tmp").mkdir()  # not a checkpoint name
    (tmp_path / "checkpoint-80").write_text("a file, not a folder")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")


def test_rerun_with_other_settings_stops_before_any_work(tiny_model_dir, prepared_dir, tmp_path, capsys, monkeypatch):
    from recpipe.cli import main as cli

    out = tmp_path / "run"
    train = ["train", "--config", str(recipe(tmp_path, tiny_model_dir, prepared_dir, out)), "--max_steps", "6"]
    train += ["--save_steps", "3"]
    assert cli(train) == 0
    first = json.loads((out / "test_results.json").read_text())
    assert json.loads((out / "run_settings.json").read_text())["settings"]["mlm_weight"] == 0.3

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr("recpipe.pipeline.prepared_data", no_work)
    monkeypatch.setattr("recpipe.pipeline.build_model", no_work)
    capsys.readouterr()
    for changed, expected in (
        (["--mlm_weight", "0"], "mlm_weight 0.3 → 0.0"),
        (["--peft_type", "adalora"], "peft_type 'lora' → 'adalora'"),
        (["--max_steps", "8", "--seed", "4"], "max_steps 6 → 8, seed 3 → 4"),
    ):
        assert cli(train + changed) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
        assert "--resume false" in err and "--output_dir" in err
    monkeypatch.undo()

    # settings that only decide how the run is reported and saved may change; the run had ended: no step is added
    assert cli(train + ["--logging_steps", "1", "--save_total_limit", "1", "--report_to", "tensorboard"]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and all(entry["step"] <= 6 for entry in state["log_history"])
    assert json.loads((out / "train_results.json").read_text())["train_steps_this_launch"] == 0
    assert json.loads((out / "test_results.json").read_text()) == first

    # --resume false starts afresh: the old checkpoints go, the new run's settings are recorded
    assert cli(train + ["--mlm_weight", "0", "--resume", "false"]) == 0
    assert json.loads((out / "run_settings.json").read_text())["settings"]["mlm_weight"] == 0.0
    for step in (3, 6):
        assert json.loads((out / f"checkpoint-{step}" / "training_args.json").read_text())["mlm_weight"] == 0.0

    # checkpoints without a record (an older recpipe) cannot be checked: not resumed blindly
    (out / "run_settings.json").unlink()
    capsys.readouterr()
    assert cli(train + ["--mlm_weight", "0"]) == 2
    assert "no run_settings.json" in capsys.readouterr().err


def test_the_record_holds_what_shapes_weights_and_no_secret(tmp_path):
    from helpers import model_args, training_args

    from recpipe.configs import DataArguments
    from recpipe.run_settings import run_settings

    def settings(**kw):
        args = training_args(tmp_path, hub_token="hf_secret_canary", **kw)
        return run_settings(DataArguments(max_history=10), model_args("tiny"), args, num_processes=1)

    base = settings()
    assert "hf_secret_canary" not in json.dumps(base)
    assert settings(logging_steps=7, save_steps=9, report_to=["tensorboard"], output_dir=str(tmp_path / "x")) == base
    assert settings(learning_rate=1e-4) != base and settings(gradient_accumulation_steps=2) != base
    assert {"max_history", "peft_type", "learning_rate", "seed", "num_processes", "max_steps"} <= set(base)
