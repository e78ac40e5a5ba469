"""The security audit's promises: no pickle on any load path (safetensors, JSON and Arrow; ``weights_only=True``
where the Trainer's ``torch.load`` remains), model code from the hub only when asked (``trust_remote_code``), and a
W&B API key never printed nor written to any file of a run."""

import ast
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import model_args, rec_model, recipe

import recpipe
from recpipe.backbone import BackboneConfig
from recpipe.configs import ModelArguments
from recpipe.ctr.config import CTRModelArguments
from recpipe.parser import RecipeParser

PACKAGE = Path(recpipe.__file__).parent
UNPICKLERS = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def test_no_module_can_unpickle():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.name}: import {n}" for n in names if n and n.split(".")[0] in UNPICKLERS]
            if isinstance(node, ast.Call):
                name, keywords = dotted(node.func), {k.arg: k.value for k in node.keywords}
                weights_only = keywords.get("weights_only")
                safe = isinstance(weights_only, ast.Constant) and weights_only.value is True
                if name.endswith("torch.load") and not safe:
                    offenders.append(f"{path.name}:{node.lineno}: torch.load without weights_only=True")
                pickled = keywords.get("allow_pickle")
                if name.endswith(".load") and isinstance(pickled, ast.Constant) and pickled.value:
                    offenders.append(f"{path.name}:{node.lineno}: {name}(allow_pickle=True)")
                if name.endswith("read_pickle"):
                    offenders.append(f"{path.name}:{node.lineno}: {name}")
    assert not offenders


@pytest.mark.slow
def test_loading_and_resuming_never_unpickle(tiny_model_dir, tmp_path, prepared_dir):
    """With pickle's loaders made to fail and torch.load made to insist on weights_only (tests/fault_hooks.py), a
    resume (weights, text cache, optimizer, scheduler, RNG state, trainer state, prepared data) and the evaluation of
    the checkpoint work."""
    hooks, out = Path(__file__).parent / "fault_hooks.py", tmp_path / "run"
    train = ["train", "--config", str(recipe(tmp_path, tiny_model_dir, prepared_dir, out)), "--max_steps", "6"]
    train += ["--save_steps", "2"]

    def launch(hook, args):
        cmd = [sys.executable, str(hooks), *hook, "--", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    assert launch(["at_step", "4"], train).returncode == -signal.SIGKILL  # leaves checkpoint-2 to resume from
    resumed = launch(["no_unpickling"], train)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    read = resumed.stderr.splitlines()[-1]
    assert "'optimizer.pt'" in read and "'scheduler.pt'" in read and "'rng_state.pth'" in read, read
    evaluated = launch(["no_unpickling"], ["evaluate", "--checkpoint", str(out)])
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]


def test_remote_code_runs_only_when_asked(tiny_model_dir, tmp_path, monkeypatch):
    for cls in (ModelArguments, CTRModelArguments, BackboneConfig):
        assert {f.name: f.default for f in dataclasses.fields(cls)}["trust_remote_code"] is False, cls
    flags = ["--output_dir", str(tmp_path), "--trust_remote_code", "true"]
    assert RecipeParser().parse_args_into_dataclasses(flags)[1].trust_remote_code is True

    import transformers

    asked = []
    for auto in (transformers.AutoTokenizer, transformers.AutoModelForMaskedLM):
        original = auto.from_pretrained.__func__

        def from_pretrained(cls, *args, _original=original, **kwargs):
            asked.append(kwargs.get("trust_remote_code"))
            return _original(cls, *args, **{**kwargs, "trust_remote_code": False})  # the tiny model has no code

        monkeypatch.setattr(auto, "from_pretrained", classmethod(from_pretrained))
    rec_model(model_args(tiny_model_dir))
    rec_model(model_args(tiny_model_dir, trust_remote_code=True))
    assert asked == [False, False, True, True]


@pytest.mark.slow
def test_wandb_api_key_is_never_printed_or_written(tiny_model_dir, tmp_path, prepared_dir):
    """A launch of its own (W&B keeps process-wide state): an offline W&B run with the key set in the environment."""
    key = "5ecret" + "c0ffee" * 5 + "feed"  # 40 characters, like a real key
    env = {**os.environ, "WANDB_API_KEY": key, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wb")}
    (tmp_path / "wb").mkdir()
    config = recipe(tmp_path, tiny_model_dir, prepared_dir, tmp_path / "out")
    cmd = [sys.executable, "-m", "recpipe.cli", "train", "--config", str(config), "--max_steps", "2"]
    cmd += ["--logging_steps", "1", "--report_to", "wandb"]
    launch = subprocess.run(cmd, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert key not in launch.stdout + launch.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)  # the run was logged...
    assert not [p for p in written if key.encode() in p.read_bytes()]  # ...without the key
