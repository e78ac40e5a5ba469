"""The security audit's promises: no pickle on any load path (safetensors, JSON and Arrow; ``weights_only=True``
where the Trainer's ``torch.load`` remains), model code from the hub only when asked (``trust_remote_code``), and a
W&B API key never printed nor written to any file of a run."""

import ast
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from helpers import make_trainer, model_args, rec_model, training_args

import recpipe
from recpipe.backbone import BackboneConfig
from recpipe.configs import DataArguments, ModelArguments
from recpipe.ctr.config import CTRModelArguments
from recpipe.data import load_prepared
from recpipe.modeling import load_checkpoint
from recpipe.parser import RecipeParser
from recpipe.pipeline import run

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


def test_loading_and_resuming_never_unpickle(tiny_model_dir, tmp_path, prepared_dir, monkeypatch):
    """With pickle's loaders made to fail and torch.load made to insist on weights_only, every load path works: a
    resume (weights, text cache, optimizer, scheduler, RNG state, trainer state), a checkpoint, a prepared dataset."""
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2)
    first, *_ = make_trainer(tiny_model_dir, tmp_path, max_fresh_items=8, **{**settings, "max_steps": 2})
    first.train_and_save()

    def unpickle(*args, **kwargs):
        raise AssertionError("a load path unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, unpickle)
    torch_load = torch.load
    loaded = []

    def weights_only_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        loaded.append(args[0])
        return torch_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", weights_only_load)
    resumed, *_ = make_trainer(tiny_model_dir, tmp_path, max_fresh_items=8, **settings)
    resumed.train_and_save()
    assert resumed.state.global_step == 4 and any(str(p).endswith("optimizer.pt") for p in loaded)
    load_checkpoint(tmp_path / "out")
    load_prepared(prepared_dir)


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
def test_wandb_api_key_is_never_printed_or_written(tiny_model_dir, tmp_path, prepared_dir, monkeypatch, capfd):
    key = "5ecret" + "c0ffee" * 5 + "feed"  # 40 characters, like a real key
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    args = training_args(tmp_path, max_steps=2, report_to=["wandb"], logging_steps=1)
    run(DataArguments(max_history=10, prepared_dir=prepared_dir), model_args(tiny_model_dir), args)
    printed = capfd.readouterr()
    assert key not in printed.out + printed.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written)  # the run was logged...
    assert not [p for p in written if key.encode() in p.read_bytes()]  # ...without the key
    assert key not in json.dumps(json.loads((tmp_path / "out" / "training_args.json").read_text()))
