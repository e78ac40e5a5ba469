"""A run killed with SIGKILL mid-training and resumed ends with the same metrics as an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import recipe


def train(config: Path, **popen):
    return subprocess.Popen([sys.executable, "-m", "recpipe.cli", "train", "--config", str(config)], **popen)


@pytest.mark.parametrize("save_item_cache", [True, False], ids=["cache-saved", "cache-re-encoded"])
def test_sigkill_and_resume_gives_the_same_metrics(tiny_model_dir, prepared_dir, tmp_path, save_item_cache):
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    options = {"save_item_cache": save_item_cache}
    whole = tmp_path / "whole"
    assert train(recipe(tmp_path, tiny_model_dir, prepared_dir, whole, **options), **quiet).wait(timeout=600) == 0
    assert (whole / "checkpoint-20" / "text_cache.safetensors").is_file() == save_item_cache

    broken = tmp_path / "broken"
    config = recipe(tmp_path, tiny_model_dir, prepared_dir, broken, **options)
    proc = train(config, **quiet)
    checkpoint = broken / "checkpoint-20" / "trainer_state.json"
    deadline = time.time() + 600
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "test_results.json").exists()
    # a kill while a checkpoint is being written leaves a folder with weights but no trainer state: skipped
    half_written = broken / "checkpoint-59"
    half_written.mkdir(exist_ok=True)
    (half_written / "recpipe_weights.safetensors").write_bytes(b"\x00" * 100)
    assert train(config, **quiet).wait(timeout=600) == 0  # resumes from the last complete checkpoint

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
