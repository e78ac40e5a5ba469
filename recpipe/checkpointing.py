"""Checkpoints of what training changed: the trainable parameters (adapters, heads, towers; every encoder weight under
full fine-tuning) as safetensors, beside a JSON config from which the model is rebuilt before they are loaded.

Every file is written whole or not at all (``recpipe.atomic_files``), and a weights file carries a SHA-256 of its
tensors: a truncated file or a flipped byte is an error naming the file, never a silent partial or damaged load.
Trainer checkpoints (``checkpoint-N``) are written under ``.incomplete/`` and renamed into place once complete
(``BaseTrainer._save_checkpoint``), so a folder of that name is always whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.trainer import TRAINER_STATE_NAME  # the Trainer writes it last: it marks a finished checkpoint
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from recpipe.atomic_files import atomic_path, atomic_write_text, remove
from recpipe.errors import CorruptFileError, InvalidInputError, MissingInputError
from recpipe.fsdp import copy_into

WEIGHTS_NAME = "recpipe_weights.safetensors"
CHECKSUM_KEY = "recpipe_sha256"
# where a Trainer checkpoint is written before it is renamed to checkpoint-N beside it
STAGING_DIR = ".incomplete"
DAMAGED_HINT = (
    "it was cut short (a run killed while writing it, a copy that did not finish) or damaged. Write it again: rerun "
    "the training (it resumes from the last complete checkpoint), or delete this checkpoint folder"
)

logger = logging.getLogger(__name__)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # bytes of any dtype (bfloat16 has no numpy type)
    return digest.hexdigest()


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Save ``tensors`` with their checksum, whole or not at all."""
    metadata = {"format": "pt", **(metadata or {}), CHECKSUM_KEY: tensors_digest(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, checked against its checksum when it has one (files written
    before the checksum existed load unchecked)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file")
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CorruptFileError(f"{path}: unreadable ({e}): {DAMAGED_HINT}") from e
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and tensors_digest(tensors) != expected:
        raise CorruptFileError(f"{path}: the tensors do not match the checksum written with them: {DAMAGED_HINT}")
    return tensors, metadata


class TrainableWeightsMixin:
    """For an ``nn.Module`` with a ``model_config`` (a ``BackboneConfig``) and a ``config_file`` name: save and load
    exactly its parameters that require grad, beside the config that rebuilds the model."""

    config_file: str

    def trainable_state_dict(self, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The trainable parameters, taken from ``state_dict`` when given (e.g. FSDP's gathered whole weights)."""
        trainable = [n for n, p in self.named_parameters() if p.requires_grad]
        source = state_dict if state_dict is not None else dict(self.named_parameters())
        return {n: source[n].detach().contiguous() for n in trainable}

    def save_pretrained(
        self,
        output_dir: str | os.PathLike,
        extra_config: dict | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Save what training changed (adapters, heads, towers; the whole encoder under full fine-tuning) and the
        model config (``model_config``), plus ``extra_config`` (data arguments, stats, ...) in the same JSON.
        ``state_dict``: the weights to save, when the model's own are shards (FSDP)."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_safetensors(output_dir / WEIGHTS_NAME, self.trainable_state_dict(state_dict))
        config = {"model_config": self.model_config.to_dict(), **(extra_config or {})}
        atomic_write_text(output_dir / self.config_file, json.dumps(config, indent=2))
        return output_dir

    def load_trainable_weights(self, checkpoint_dir: str | os.PathLike) -> None:
        path = Path(checkpoint_dir) / WEIGHTS_NAME
        state, _ = read_safetensors(path)
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        mismatched = sorted(n for n in set(state) & set(params) if state[n].shape != params[n].shape)
        if missing or unexpected or mismatched:
            raise InvalidInputError(
                f"{path}: the weights do not match the model (missing {missing[:5]}, extra {unexpected[:5]}, other "
                f"shapes {mismatched[:5]}): they come from a model with other settings (peft_type, lora_r, "
                "hidden_size, ...)"
            )
        with torch.no_grad():
            for name, value in state.items():
                copy_into(params[name], value)  # also into an FSDP shard


def read_checkpoint_config(checkpoint_dir: str | os.PathLike, config_file: str, what: str) -> dict:
    """The JSON a recpipe checkpoint keeps beside its weights; a folder without it is not a ``what`` checkpoint."""
    path = Path(checkpoint_dir) / config_file
    if not path.is_file():
        raise MissingInputError(f"{checkpoint_dir} is not a {what} checkpoint (no {config_file})")
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e}): {DAMAGED_HINT}") from e
    if not isinstance(saved, dict):
        raise CorruptFileError(f"{path}: expected a JSON object, found {type(saved).__name__}: {DAMAGED_HINT}")
    return saved


def config_from_checkpoint(checkpoint_dir: str | os.PathLike, config_file: str, what: str, config_cls):
    """``(config_cls.from_checkpoint(saved), saved)``; a config JSON that lacks what rebuilds the model is damaged."""
    saved = read_checkpoint_config(checkpoint_dir, config_file, what)
    try:
        return config_cls.from_checkpoint(saved), saved
    except (KeyError, TypeError) as e:
        path = Path(checkpoint_dir) / config_file
        raise CorruptFileError(f"{path}: incomplete model config ({type(e).__name__}: {e}): {DAMAGED_HINT}") from e


def save_training_files(trainer, output_dir: str | os.PathLike) -> None:
    """What a Trainer checkpoint holds beside the weights: the tokenizer and the training arguments."""
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(output_dir)
    atomic_write_text(Path(output_dir, "training_args.json"), trainer.args.to_json_string())


def checkpoints(output_dir: str | os.PathLike) -> dict[int, str]:
    """The ``checkpoint-N`` folders under ``output_dir`` by step."""
    if not os.path.isdir(output_dir):
        return {}
    found = {}
    for name in os.listdir(output_dir):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found[int(match.group(1))] = os.path.join(output_dir, name)
    return found


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` under ``output_dir`` that was written to the end, or None.

    recpipe writes checkpoints under ``.incomplete/`` and renames them into place, so a folder named ``checkpoint-N``
    is whole; one copied or written otherwise (older recpipe, ``get_last_checkpoint`` users) may not be. The Trainer
    writes ``trainer_state.json`` last, so a checkpoint whose state file is missing or unreadable is skipped."""
    steps = checkpoints(output_dir)
    for step in sorted(steps, reverse=True):
        try:
            json.loads(Path(steps[step], TRAINER_STATE_NAME).read_text())
            return steps[step]
        except (OSError, ValueError):
            logger.warning("skipping %s: not written to the end (no readable %s)", steps[step], TRAINER_STATE_NAME)
    return None


def run_has_ended(checkpoint: str | os.PathLike, max_steps: int = -1) -> bool:
    """Whether training is over at ``checkpoint``: ``max_steps`` reached (the checkpoint's own when not given), or
    stopped before it (early stopping).

    transformers' loop resumed from such a checkpoint still takes one more optimizer step (it checks the step count
    only after a step), so a finished run must not be resumed through ``Trainer.train``."""
    state = json.loads(Path(checkpoint, TRAINER_STATE_NAME).read_text())
    control = state.get("stateful_callbacks", {}).get("TrainerControl", {}).get("args", {})
    stopped_early = bool(control.get("should_training_stop")) and state["global_step"] < state["max_steps"]
    return state["global_step"] >= (max_steps if max_steps > 0 else state["max_steps"]) or stopped_early


def remove_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Delete the ``checkpoint-N`` folders (and unfinished ones) under ``output_dir``; returns what was deleted."""
    gone = list(checkpoints(output_dir).values())
    for path in gone:
        remove(path)
    remove(Path(output_dir, STAGING_DIR))
    return gone
