"""Faults injected for real on tiny models and data: SIGKILL during training, checkpoint writing and data
preparation, damaged checkpoint files, a full disk, two preparations of one folder at once, a NaN loss. What each
promises: nothing complete is lost, nothing partial is taken for complete, and every error names what went wrong.

The kills are real (``tests/fault_hooks.py`` makes the child send SIGKILL to itself at a chosen point, so each test
hits the same point every time); the full disk is simulated (a write that raises ENOSPC after writing some bytes).
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_trainer, random_rows, recipe
from transformers import TrainerCallback

import recpipe.checkpointing
from recpipe.checkpointing import STAGING_DIR, WEIGHTS_NAME, last_complete_checkpoint
from recpipe.cli import main as cli
from recpipe.data import load_prepared
from recpipe.errors import CorruptFileError, NonFiniteLossError, WriteFailedError
from recpipe.modeling import CONFIG_NAME, load_checkpoint

HOOKS = Path(__file__).parent / "fault_hooks.py"
KILLED = -signal.SIGKILL


def recpipe_child(tmp_path: Path, hook: list[str], args: list[str], wait: bool = True):
    """Run ``recpipe ARGS`` in a child process with one fault armed (see fault_hooks.py); returns the process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    cmd = [sys.executable, str(HOOKS), *hook, "--", *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    _, err = proc.communicate(timeout=600)
    proc.stderr_text = err
    return proc


@pytest.mark.slow
def test_kills_in_training_and_in_checkpoint_writes_resume_to_the_same_metrics(tiny_model_dir, prepared_dir, tmp_path):
    """60 steps, a checkpoint every 20. The interrupted run is killed three times — mid-training (step 25), halfway
    through writing checkpoint-40's optimizer state, and halfway through writing the final weights after
    checkpoint-60 — and resumed each time; it ends with the uninterrupted run's test metrics, at step 60."""
    whole = tmp_path / "whole"
    config = recipe(tmp_path, tiny_model_dir, prepared_dir, whole)
    done = recpipe_child(tmp_path, ["none"], ["train", "--config", config])
    assert done.returncode == 0, done.stderr_text[-3000:]

    out = tmp_path / "broken"
    train = ["train", "--config", recipe(tmp_path, tiny_model_dir, prepared_dir, out)]
    assert recpipe_child(tmp_path, ["at_step", "25"], train).returncode == KILLED
    assert last_complete_checkpoint(out) == str(out / "checkpoint-20")

    killed = recpipe_child(tmp_path, ["mid_write", r"checkpoint-40/optimizer\.pt$"], train)
    assert killed.returncode == KILLED
    assert (out / STAGING_DIR / "checkpoint-40" / "optimizer.pt").is_file()  # the half-written file is there...
    assert not (out / "checkpoint-40").exists()  # ...under a name no resume takes
    assert last_complete_checkpoint(out) == str(out / "checkpoint-20")

    killed = recpipe_child(tmp_path, ["mid_write", rf"{re.escape(str(out))}/\.{WEIGHTS_NAME}"], train)
    assert killed.returncode == KILLED
    assert last_complete_checkpoint(out) == str(out / "checkpoint-60")
    assert not (out / WEIGHTS_NAME).exists() and not (out / "test_results.json").exists()

    resumed = recpipe_child(tmp_path, ["none"], train)
    assert resumed.returncode == 0, resumed.stderr_text[-3000:]
    assert json.loads((out / "test_results.json").read_text()) == json.loads((whole / "test_results.json").read_text())
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 60  # the run that had ended at checkpoint-60 took no 61st step
    assert max(entry["step"] for entry in state["log_history"]) == 60
    assert not (out / STAGING_DIR).exists() and not list(out.glob(".*.tmp-*"))  # partial writes cleared


def test_damaged_weights_or_config_are_errors_naming_the_file(tiny_model_dir, tmp_path, capsys):
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, max_steps=2)
    trainer.train()
    checkpoint = tmp_path / "checkpoint"
    trainer.save_model(str(checkpoint))
    weights, config = checkpoint / WEIGHTS_NAME, checkpoint / CONFIG_NAME
    good_weights, good_config = weights.read_bytes(), config.read_text()

    flipped = bytearray(good_weights)
    flipped[-5] ^= 0xFF  # a byte of tensor data: the file still parses, only the checksum can tell
    for damaged in (good_weights[: len(good_weights) // 2], b"", good_weights[:7], bytes(flipped)):
        weights.write_bytes(damaged)
        with pytest.raises(CorruptFileError, match=re.escape(str(weights))):
            load_checkpoint(checkpoint)
    weights.write_bytes(good_weights)
    for damaged in (good_config[: len(good_config) // 2], "{}", "[1, 2]"):
        config.write_text(damaged)
        with pytest.raises(CorruptFileError, match=re.escape(str(config))):
            load_checkpoint(checkpoint)

    config.write_text(good_config[:40])
    capsys.readouterr()
    assert cli(["evaluate", "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err and "Traceback" not in err
    config.write_text(good_config)
    load_checkpoint(checkpoint)  # intact again: loads


def test_full_disk_while_saving_keeps_the_previous_checkpoint_resumable(tiny_model_dir, tmp_path, monkeypatch):
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2)
    torch.manual_seed(0)
    whole, *_ = make_trainer(tiny_model_dir, tmp_path / "whole", **settings)
    whole.train_and_save()

    real_save_file = recpipe.checkpointing.save_file

    def full_disk(tensors, filename, metadata=None):
        if f"{STAGING_DIR}/checkpoint-4/" in filename:
            Path(filename).write_bytes(b"\0" * 64)  # the part that fitted
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(recpipe.checkpointing, "save_file", full_disk)
    torch.manual_seed(0)
    broken, *_ = make_trainer(tiny_model_dir, tmp_path / "broken", **settings)
    out = tmp_path / "broken" / "out"
    expected = r"checkpoint-4 .*No space left on device.*the last: .*checkpoint-2\): free some space"
    with pytest.raises(WriteFailedError, match=expected):
        broken.train_and_save()
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name or p.name == STAGING_DIR) == ["checkpoint-2"]
    monkeypatch.undo()

    resumed, *_ = make_trainer(tiny_model_dir, tmp_path / "broken", **settings)
    resumed.train_and_save()
    assert resumed.state.global_step == 4
    expected = whole.model.trainable_state_dict()
    for name, value in resumed.model.trainable_state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_nan_loss_stops_training_naming_the_step_and_the_part(tiny_model_dir, tmp_path):
    trainer, *_ = make_trainer(tiny_model_dir, tmp_path, max_steps=6)

    class PoisonAfterStep2(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                with torch.no_grad():
                    trainer.model.user_tower.norm.weight[0] = float("nan")  # a real NaN through the real forward
                self.weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    poison = PoisonAfterStep2()
    trainer.add_callback(poison)
    with pytest.raises(NonFiniteLossError, match=r"finetune step 3: rec_loss = nan \(finite: ") as error:
        trainer.train()
    finite = str(error.value).split("(finite: ")[1].split(")")[0]
    assert "mlm_loss = " in finite and "rel_loss = " in finite  # the parts that stayed finite are not blamed
    assert trainer.state.global_step == 2
    for name, value in trainer.model.named_parameters():  # no update was made from the NaN step
        assert torch.allclose(value, poison.weights[name], rtol=0, atol=0, equal_nan=True), name


def test_nan_loss_is_one_line_from_the_command(tiny_model_dir, prepared_dir, tmp_path, capsys):
    config = recipe(tmp_path, tiny_model_dir, prepared_dir, tmp_path / "nan")
    assert cli(["train", "--config", str(config), "--temperature", "1e-38"]) == 2  # scores / 1e-38 overflow
    err = capsys.readouterr().err  # progress bars, then the one line
    assert "Traceback" not in err
    assert re.fullmatch(r"recpipe: error: finetune step 1: rec_loss = (nan|inf) .*", err.splitlines()[-1]), err


def shop_files(tmp_path: Path) -> list[str]:
    """Generic CSV files of 40 users x 12 interactions (histories longer than the max_history used below)."""
    rows = random_rows(n_users=40, per_user=12, n_items=30, seed=1, max_time=10_000)
    clicks, items = tmp_path / "clicks.csv", tmp_path / "items.csv"
    clicks.write_text("user_id,item_id,timestamp,rating\n" + "".join(f"{u},{i},{t},{r}\n" for u, i, t, r in rows))
    items.write_text("item_id,title\n" + "".join(f"i{k},Item number {k}\n" for k in range(30)))
    return ["--dataset", "generic", "--interactions", clicks, "--items", items]


def check_whole(folder: Path, max_history: int) -> None:
    """A prepared dataset whose every split agrees with its stats (one preparation, not a mix of two)."""
    dd, stats = load_prepared(folder)
    assert stats["config"]["max_history"] == max_history
    for split in ("valid", "test"):
        assert max(len(h) for h in dd[split]["history"]) == max_history


@pytest.mark.slow
def test_killed_prepare_is_never_taken_for_a_prepared_dataset(tmp_path):
    out = tmp_path / "shop"
    prepare = ["data", "prepare", *shop_files(tmp_path), "--output-dir", out, "--min_item_interactions", "1"]
    done = recpipe_child(tmp_path, ["none"], [*prepare, "--max_history", "5"])
    assert done.returncode == 0, done.stderr_text[-2000:]
    check_whole(out, 5)

    def leftovers():
        return sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".shop."))

    # preparing other settings over it, killed while the splits are written (before the third of five)...
    kill_in_splits = ["call", "datasets.arrow_dataset:Dataset.save_to_disk", "3", "kill"]
    assert recpipe_child(tmp_path, kill_in_splits, [*prepare, "--max_history", "3"]).returncode == KILLED
    check_whole(out, 5)  # the old dataset, whole, and still current for its settings
    assert leftovers() == [".shop.lock", ".shop.tmp"]
    # ...or once the new folder is complete but not yet in place
    kill_before_swap = ["call", "recpipe.atomic_files:replace_dir", "1", "kill"]
    assert recpipe_child(tmp_path, kill_before_swap, [*prepare, "--max_history", "3"]).returncode == KILLED
    check_whole(out, 5)
    assert leftovers() == [".shop.lock", ".shop.tmp"]  # the earlier leftover was cleared under the lock


@pytest.mark.slow
def test_two_preparations_of_one_folder_give_one_whole_dataset(tmp_path):
    out = tmp_path / "shop"
    prepare = ["data", "prepare", *shop_files(tmp_path), "--output-dir", out, "--min_item_interactions", "1"]
    # the first pauses 3 s halfway through writing its splits, while the second prepares other settings
    slow = ["call", "datasets.arrow_dataset:Dataset.save_to_disk", "3", "pause"]
    first = recpipe_child(tmp_path, slow, [*prepare, "--max_history", "3"], wait=False)
    second = recpipe_child(tmp_path, ["none"], [*prepare, "--max_history", "5"], wait=False)
    for proc in (first, second):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    check_whole(out, json.loads((out / "stats.json").read_text())["config"]["max_history"])
