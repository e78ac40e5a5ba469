"""Quiet, truthful output: loading an encoder saved without an MLM head (as all-MiniLM-L6-v2 is) prints no
"corrupted checkpoint" warning, no loading report and no progress bar, and says in one line which head weights
start new; loading a recpipe checkpoint says nothing; a training stage logs one trainable-parameter count."""

import logging
from pathlib import Path

import pytest
import torch
from conftest import WORDS
from helpers import model_args, training_args

from recpipe.configs import DataArguments, RecModelConfig
from recpipe.modeling import build_model, load_checkpoint
from recpipe.pipeline import run

NOISE = ("corrupted", "LOAD REPORT", "MISSING", "UNEXPECTED", "Loading weights", "FutureWarning", "trainable params")


@pytest.fixture(scope="module")
def headless_encoder_dir(tmp_path_factory):
    """A tiny BertModel saved without an MLM head (and with a pooler), like the packaged MiniLM."""
    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("headless-bert")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ":", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS) + 7, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(d)
    BertTokenizer(vocab=str(d / "vocab.txt")).save_pretrained(d)
    return str(d)


def test_loading_an_encoder_without_mlm_head_says_one_line(headless_encoder_dir, capfd, caplog):
    caplog.set_level(logging.INFO)
    margs = model_args(headless_encoder_dir)
    build_model(RecModelConfig.from_arguments(margs, num_items=40, max_history=10))
    printed = "".join(capfd.readouterr())
    assert not [n for n in NOISE if n in printed], printed
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    head = [m for m in lines if "no trained MLM head" in m]
    assert len(head) == 1 and "cls.predictions.transform.dense" in head[0], lines
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_encoder_weights_are_still_reported(headless_encoder_dir, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    from recpipe.backbone import load_masked_lm

    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "vocab.txt", "tokenizer_config.json"):
        (broken / f).write_bytes((Path(headless_encoder_dir) / f).read_bytes())
    state = load_file(f"{headless_encoder_dir}/model.safetensors")
    save_file(
        {k: v for k, v in state.items() if "encoder.layer.0.attention.self.query" not in k},
        broken / "model.safetensors",
    )
    caplog.set_level(logging.INFO)
    load_masked_lm(RecModelConfig.from_arguments(model_args(str(broken)), num_items=40, max_history=10))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "attention.self.query.weight" in warnings[0]


def test_training_logs_one_parameter_count_and_checkpoint_loads_say_nothing(
    tiny_model_dir, tmp_path, prepared_dir, capfd, caplog
):
    caplog.set_level(logging.INFO)
    run(DataArguments(max_history=10, prepared_dir=prepared_dir), model_args(tiny_model_dir), training_args(tmp_path))
    counts = [r.getMessage() for r in caplog.records if "trainable parameters" in r.getMessage()]
    assert len(counts) == 1 and "adapters" in counts[0] and "towers and heads" in counts[0], counts
    data = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data (")]
    assert len(data) == 1 and "filtered:" in data[0]  # how much data survived, at the start of the run
    printed = "".join(capfd.readouterr())
    assert "trainable params" not in printed
    caplog.clear()
    load_checkpoint(tmp_path / "out")
    assert not [n for n in NOISE if n in "".join(capfd.readouterr())]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
