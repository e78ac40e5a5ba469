"""Checkpoints of what training changed: the trainable parameters (adapters, heads, towers; every encoder weight under
full fine-tuning) as safetensors, beside a JSON config from which the model is rebuilt before they are loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "recpipe_weights.safetensors"


class TrainableWeightsMixin:
    """For an ``nn.Module``: save and load exactly its parameters that require grad."""

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def save_trainable(self, output_dir: str | os.PathLike, config_name: str, config: dict) -> Path:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state_dict(), str(output_dir / WEIGHTS_NAME), metadata={"format": "pt"})
        (output_dir / config_name).write_text(json.dumps(config, indent=2))
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


def save_training_files(trainer, output_dir: str | os.PathLike) -> None:
    """What a Trainer checkpoint holds beside the weights: the tokenizer and the training arguments."""
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(output_dir)
    Path(output_dir, "training_args.json").write_text(trainer.args.to_json_string())
