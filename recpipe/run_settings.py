"""One output folder, one set of settings: reruns are safe by construction.

A training run records every setting that shapes its weights and data (``run_settings.json`` in ``output_dir``: the
data, model and training arguments, the training stages and the number of processes, less the few that only decide
where and how the run is reported). A rerun into the same folder resumes only with the same settings, and otherwise
stops before any work with the keys that differ. Without this, a rerun with a changed flag resumed the old run's
checkpoints, trained on with the new flag, and labelled the mixture (model card, ``training_args.json``) with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

from transformers import TrainingArguments

from recpipe.atomic_files import atomic_write_text
from recpipe.checkpointing import last_complete_checkpoint, remove_checkpoints
from recpipe.errors import ChangedSettingsError, CorruptFileError

SETTINGS_FILE = "run_settings.json"

# Settings that decide where and how a run is reported and saved, never its weights or data: a rerun may change them.
# Every other argument counts, so a new argument is part of the record unless it is added here.
REPORTING_ONLY = frozenset(
    {
        "output_dir",
        "run_name",
        "project",
        "report_to",
        "resume",
        "resume_from_checkpoint",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "disable_tqdm",
        "skip_memory_metrics",
        "include_num_input_tokens_seen",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_on_each_node",
        "save_only_model",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "trackio_space_id",
        "trackio_bucket_id",
        "trackio_static_space_id",
        "local_rank",  # differs between the processes of one run
        "ddp_timeout",
        "dataloader_pin_memory",
        "dataloader_prefetch_factor",
        "per_device_eval_batch_size",  # evaluation memory; the numbers agree up to rounding
        "eval_accumulation_steps",
        "robustness_perturbations",  # the robustness stage reads the finished checkpoint
        "robustness_severities",
    }
)

logger = logging.getLogger(__name__)


def run_settings(*arguments, **values) -> dict:
    """The settings of a run that shape its weights and data: every field of the argument dataclasses (a
    ``TrainingArguments`` through ``to_dict``, which hides tokens) but ``REPORTING_ONLY``, then ``values`` (such as
    ``num_processes``), as JSON values."""
    settings = {}
    for args in arguments:
        fields = args.to_dict() if isinstance(args, TrainingArguments) else dataclasses.asdict(args)
        settings.update({k: v for k, v in fields.items() if k not in REPORTING_ONLY})
    settings.update(values)
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def recorded_settings(output_dir: str | os.PathLike) -> dict | None:
    """The settings the run in ``output_dir`` was started with, or None when it records none."""
    path = Path(output_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["settings"]
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptFileError(f"{path}: damaged ({type(e).__name__}: {e}); it is no record of settings") from e


def describe_changes(old: dict, new: dict, limit: int = 8) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    shown = [f"{k} {old.get(k, '<unset>')!r} → {new.get(k, '<unset>')!r}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def claim_output_dir(output_dir: str | os.PathLike, settings: dict, resume: bool, is_main_process: bool) -> None:
    """Check that a run with ``settings`` may use ``output_dir``, then record them there (main process).

    With ``resume`` (the default), a folder that holds a run with other settings is an error naming the keys that
    differ, raised before any data or model is loaded; so is a checkpoint without a record (written by recpipe before
    records existed: its settings cannot be checked). Without ``resume`` the run starts afresh: the folder's
    checkpoints are deleted, since a later resume would otherwise pick up the old run's.
    """
    output_dir = Path(output_dir)
    old = recorded_settings(output_dir)
    ways_on = (
        "To start afresh in this folder pass --resume false (its checkpoints are deleted); to keep the old run, "
        "pass a new --output_dir"
    )
    if resume and old is not None and old != settings:
        raise ChangedSettingsError(
            f"{output_dir} holds a run with other settings: {describe_changes(old, settings)}. Resuming it would "
            f"train on under the new settings and label the mixture with them. {ways_on}."
        )
    stages_dirs = (output_dir, output_dir / "pretrain")
    if resume and old is None and any(last_complete_checkpoint(d) for d in stages_dirs):
        raise ChangedSettingsError(
            f"{output_dir} holds checkpoints but no {SETTINGS_FILE} (written by an older recpipe): whether their "
            f"settings match cannot be checked. {ways_on}."
        )
    if not is_main_process:
        return
    if not resume:
        for folder in stages_dirs:
            for gone in remove_checkpoints(folder):
                logger.warning("resume is off: deleted %s", gone)
    if old != settings or not resume:
        output_dir.mkdir(parents=True, exist_ok=True)
        record = {"fingerprint": fingerprint(settings), "settings": settings}
        atomic_write_text(output_dir / SETTINGS_FILE, json.dumps(record, indent=2, sort_keys=True))
