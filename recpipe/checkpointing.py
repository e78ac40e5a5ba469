"""Checkpoints of what training changed: the trainable parameters (adapters, heads, towers; every encoder weight under
full fine-tuning) as safetensors, beside a JSON config from which the model is rebuilt before they are loaded."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers.trainer import TRAINER_STATE_NAME  # the Trainer writes it last: it marks a finished checkpoint
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recpipe.errors import MissingInputError

WEIGHTS_NAME = "recpipe_weights.safetensors"

logger = logging.getLogger(__name__)


class TrainableWeightsMixin:
    """For an ``nn.Module`` with a ``model_config`` (a ``BackboneConfig``) and a ``config_file`` name: save and load
    exactly its parameters that require grad, beside the config that rebuilds the model."""

    config_file: str

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def save_pretrained(self, output_dir: str | os.PathLike, extra_config: dict | None = None) -> Path:
        """Save what training changed (adapters, heads, towers; the whole encoder under full fine-tuning) and the
        model config (``model_config``), plus ``extra_config`` (data arguments, stats, ...) in the same JSON."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state_dict(), str(output_dir / WEIGHTS_NAME), metadata={"format": "pt"})
        config = {"model_config": self.model_config.to_dict(), **(extra_config or {})}
        (output_dir / self.config_file).write_text(json.dumps(config, indent=2))
        return output_dir

    def load_trainable_weights(self, checkpoint_dir: str | os.PathLike) -> None:
        state = load_file(str(Path(checkpoint_dir) / WEIGHTS_NAME))
        expected = set(self.trainable_state_dict())
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state))[:5], sorted(set(state) - expected)[:5]
            raise ValueError(
                f"{checkpoint_dir}: weights do not match the model (missing {missing}, extra {unexpected})"
            )
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def read_checkpoint_config(checkpoint_dir: str | os.PathLike, config_file: str, what: str) -> dict:
    """The JSON a recpipe checkpoint keeps beside its weights; a folder without it is not a ``what`` checkpoint."""
    path = Path(checkpoint_dir) / config_file
    if not path.is_file():
        raise MissingInputError(f"{checkpoint_dir} is not a {what} checkpoint (no {config_file})")
    return json.loads(path.read_text())


def save_training_files(trainer, output_dir: str | os.PathLike) -> None:
    """What a Trainer checkpoint holds beside the weights: the tokenizer and the training arguments."""
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(output_dir)
    Path(output_dir, "training_args.json").write_text(trainer.args.to_json_string())


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` under ``output_dir`` that was written to the end, or None.

    ``transformers.trainer_utils.get_last_checkpoint`` returns the newest folder even when the run was killed
    while writing it (weights there, no optimizer or trainer state), and resuming from it then fails. The Trainer
    writes ``trainer_state.json`` last, so a checkpoint whose state file is missing or unreadable is skipped."""
    if not os.path.isdir(output_dir):
        return None
    steps = {}
    for name in os.listdir(output_dir):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            steps[int(match.group(1))] = os.path.join(output_dir, name)
    for step in sorted(steps, reverse=True):
        try:
            json.loads(Path(steps[step], TRAINER_STATE_NAME).read_text())
            return steps[step]
        except (OSError, ValueError):
            logger.warning("skipping %s: not written to the end (no readable %s)", steps[step], TRAINER_STATE_NAME)
    return None
