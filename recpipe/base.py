"""What the two tasks (next-item retrieval, pointwise CTR) share: the argument base classes and the trainer base.

``BaseTrainer`` is a small ``transformers.Trainer`` subclass, as TRL's trainers share one. It sums a combined loss's
named parts and logs each (averaged over the steps since the last log, as TRL and sentence-transformers do, plus the
perplexity of a language-model part), adds AdaLoRA's orthogonality regulariser and rank allocation, puts some
parameters on their own learning rate, and saves / loads recpipe checkpoints (trainable weights + model config).
A task's trainer adds its loss and its evaluation.

Faults it guards against: a checkpoint is written under a temporary name and renamed into place once whole (a kill or
a full disk never leaves a partial ``checkpoint-N``), a run that had ended is not trained one step further when
rerun, and a NaN or infinite loss part stops training before the update it would spread (naming the step and part).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from recpipe.atomic_files import is_out_of_space, remove, remove_if_empty, remove_leftovers, replace_dir
from recpipe.backbone import check_encoder_dropout
from recpipe.checkpointing import STAGING_DIR, last_complete_checkpoint, run_has_ended, save_training_files
from recpipe.errors import InvalidInputError, NonFiniteLossError, WriteFailedError
from recpipe.peft_utils import AdaLoraCallback, adalora_orthogonal_loss, is_adalora
from recpipe.tracking import wire_run_tracking

logger = logging.getLogger(__name__)


# ---- arguments ----
@dataclass
class BaseModelArguments:
    """The backbone's adapter and loading flags, common to both tasks (each adds its model and its defaults)."""

    pooling: Literal["mean", "cls"] = field(default="mean", metadata={"help": "Pooling of token states."})
    peft_type: Literal["lora", "adalora", "ia3", "none"] = field(
        default="lora", metadata={"help": "Adapter on the encoder; none = full fine-tuning."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (AdaLoRA: the final average rank)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    encoder_dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout inside the pretrained encoder (embeddings, attention, hidden states); default: "
            "the model's own (0.1 for BERT-like models). 0 makes the items re-encoded with gradient match the "
            "cached vectors, which are encoded in eval mode."
        },
    )
    adalora_init_r: int = field(default=12, metadata={"help": "AdaLoRA: initial rank per matrix."})
    freeze_encoder: bool = field(default=False, metadata={"help": "Train no encoder weight (cached text vectors)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the hub."})

    def __post_init__(self):
        # refused at parsing, before any data or weights are loaded
        check_encoder_dropout(self.encoder_dropout)


def _bf16_without_gpu_means_cpu(args: TrainingArguments) -> None:
    """One recipe for every machine: bf16 autocast on a machine without a GPU means the CPU path (set before
    ``TrainingArguments.__post_init__``, which would otherwise look for a bf16 GPU)."""
    if args.bf16 and not torch.cuda.is_available():
        args.use_cpu = True


@dataclass
class BaseTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus what both tasks' combined losses and runs share."""

    # the names of this task's loss weights (a class attribute, not a field): each must be >= 0
    loss_weight_names = ("mlm_weight",)

    # Our collators read the raw columns; the model's forward takes **batch, so nothing may be dropped.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collators."})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."})
    mlm_weight: float = field(
        default=0.1, metadata={"help": "λ_mlm: weight of the masked-language-model loss on the encoder's input."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for MLM."})

    def __post_init__(self):
        _bf16_without_gpu_means_cpu(self)
        if self.run_name is None and self.output_dir:  # dashboards label the run by its folder's name
            self.run_name = os.path.basename(os.path.normpath(self.output_dir))
        super().__post_init__()
        if not 0 < self.mlm_probability < 1:
            raise InvalidInputError("mlm_probability must lie in (0, 1)")
        if min(getattr(self, name) for name in self.loss_weight_names) < 0:
            raise InvalidInputError("loss weights must be >= 0")

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps of the run: ``max_steps``, or the epochs over ``train_rows`` examples."""
        if self.max_steps > 0:
            return self.max_steps
        per_step = self.per_device_train_batch_size * self.gradient_accumulation_steps * max(1, self.world_size)
        return max(1, math.ceil(train_rows / per_step)) * math.ceil(self.num_train_epochs)


def mlm_collator(tokenizer, args: BaseTrainingArguments, whole_word_mask: bool = False):
    """The masking of the MLM part, or None when it is off (no tokenizer, ``mlm_weight`` 0)."""
    if tokenizer is None or args.mlm_weight == 0:
        return None
    return DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=args.mlm_probability, whole_word_mask=whole_word_mask
    )


# ---- per-parameter learning rates ----
# what wrappers put into parameter names: FSDP1 (``use_orig_params``), activation checkpointing, torch.compile, DDP
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped_name(name: str) -> str:
    """A parameter's name as the bare model has it, so that name rules hold on a wrapped model too."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name.removeprefix("module.")


def create_optimizer_with_lrs(trainer: Trainer, model, lr_of: Callable[[str], float | None]):
    """Group the trainable parameters by (learning rate, weight decay or not) and build the trainer's optimizer.

    ``lr_of(name)`` gives a parameter's learning rate, or None for ``args.learning_rate``; it sees the bare model's
    names even when the Trainer built the optimizer on a wrapped model (FSDP does). Decay follows the Trainer's own
    rule (no decay on biases and norms). Each group carries the ``label`` that ``trainer.param_group_label(name)``
    gives its parameters, for a schedule that treats some groups apart (the encoder's phase)."""
    args = trainer.args
    decay = set(trainer.get_decay_parameter_names(model))
    groups: dict[tuple[float, bool, str], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            if "_flat_param" in name:
                raise InvalidInputError(
                    "per-module learning rates need FSDP's use_orig_params=True (flattened parameters have no names)"
                )
            bare = unwrapped_name(name)
            lr = lr_of(bare)
            key = (args.learning_rate if lr is None else lr, name in decay, trainer.param_group_label(bare))
            groups.setdefault(key, []).append(param)
    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
    param_groups = [
        {"params": params, "lr": lr, "weight_decay": args.weight_decay if with_decay else 0.0, "label": label}
        for (lr, with_decay, label), params in groups.items()
    ]
    return optimizer_cls(param_groups, **kwargs)


# ---- the trainer ----
# loss parts that are a token cross-entropy (logged unweighted, so their perplexity is exp of the logged value)
LM_PARTS = ("mlm_loss", "lm_loss")


def warn_if_fsdp_falls_back(accelerator) -> None:
    """An FSDP config launched on CPUs trains with DDP: accelerate (1.15) picks FSDP only for GPU-like devices and
    says nothing. Say it, once, since every process then holds the whole model."""
    from accelerate.utils import DistributedType

    state = accelerator.state
    asked = getattr(state, "fsdp_plugin", None) is not None or os.environ.get("ACCELERATE_USE_FSDP") == "true"
    if asked and state.distributed_type == DistributedType.MULTI_CPU and accelerator.is_main_process:
        logger.warning(
            "FSDP was configured, but accelerate does not shard on CPUs: training runs with DDP, every process "
            "holding the whole model (see README, 'Several processes')"
        )


class BaseTrainer(Trainer):
    """The model must have a ``backbone`` (the pretrained LM, PEFT-wrapped or not, or None), ``save_pretrained(dir,
    extra_config=...)`` and ``load_trainable_weights(dir)``. ``extra_config`` is saved with every checkpoint."""

    # the scalar tags a task's dashboards compare runs by (TensorBoard's hparams table)
    comparison_metrics: tuple[str, ...] = ()

    def __init__(self, *args, extra_config: dict | None = None, run_config: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_config = extra_config or {}
        wire_run_tracking(self, run_config or {}, list(self.comparison_metrics))
        self._loss_parts: dict[str, list[float]] = defaultdict(list)
        self._staging_dir: str | None = None  # set while a checkpoint is being written (see _save_checkpoint)
        warn_if_fsdp_falls_back(self.accelerator)
        backbone = self.model.backbone
        if is_adalora(backbone):
            self.add_callback(AdaLoraCallback(backbone, start_step=self.encoder_start_step()))

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        # push_to_hub without a reachable Hub: one clear error at the start, not the HTTP client's traceback
        from recpipe.hub import hub_errors, unreachable_for_training

        try:
            super().init_hf_repo(token=token, private=private)
        except hub_errors() as e:
            raise unreachable_for_training(e) from None

    def encoder_start_step(self) -> int:
        """The optimizer step from which the backbone trains (0: from the start)."""
        return 0

    def encoder_phase(self) -> bool:
        """Whether this step trains the backbone (``global_step >= encoder_start_step()``)."""
        return self.state.global_step >= self.encoder_start_step()

    # ---- optimizer ----
    def learning_rates(self, model) -> Callable[[str], float | None] | None:
        """Per-parameter learning rates by bare parameter name (None: ``learning_rate``), or None for one rate."""
        return None

    def param_group_label(self, name: str) -> str:
        """The label of a parameter's optimizer group (by bare name): groups the schedule may treat apart."""
        return ""

    def create_optimizer(self, model=None):
        lr_of = self.learning_rates(model or self.model) if self.optimizer is None else None
        if lr_of is None:
            return super().create_optimizer(model)
        self.optimizer = create_optimizer_with_lrs(self, model or self.model, lr_of)
        return self.optimizer

    # ---- loss parts ----
    def sum_loss_parts(
        self, parts: dict[str, torch.Tensor], model, weights: dict[str, float] | None = None
    ) -> torch.Tensor:
        """Add AdaLoRA's orthogonality regulariser (``PeftModel.forward`` adds it to ``outputs.loss``, which our
        losses never pass through), remember every part *unweighted* for the next training log, and return the
        weighted sum ``Σ weights[name] · part`` (a part without a weight counts once: ``orth_loss`` is logged as
        added, already scaled by AdaLoRA's ``orth_reg_weight``). The weights are the run's ``*_weight`` arguments,
        in its config."""
        weights = weights or {}
        backbone = self.accelerator.unwrap_model(model).backbone
        if is_adalora(backbone) and self.encoder_phase():  # before its phase the backbone gets no gradient
            parts["orth_loss"] = adalora_orthogonal_loss(backbone)
        if model.training:
            values = {name: value.detach().float().item() for name, value in parts.items()}
            self._stop_unless_finite(values)
            for name, value in values.items():
                self._loss_parts[name].append(value)
        return sum(weights.get(name, 1.0) * value for name, value in parts.items())

    def _stop_unless_finite(self, values: dict[str, float]) -> None:
        """Raise before the backward pass when a loss part is NaN or infinite (on any process): one such step makes
        every weight NaN, and the Trainer's logs would hide it (``logging_nan_inf_filter``)."""
        bad = {name: value for name, value in values.items() if not math.isfinite(value)}
        anywhere = bool(bad)
        if self.args.world_size > 1:
            flag = torch.tensor([float(anywhere)], device=self.args.device)
            anywhere = bool(self.accelerator.reduce(flag, reduction="sum").item())
        if not anywhere:
            return
        step = self.state.global_step + 1
        what = ", ".join(f"{name} = {value}" for name, value in bad.items()) or "a loss part on another process"
        others = ", ".join(f"{name} = {value:.4g}" for name, value in values.items() if name not in bad)
        last = last_complete_checkpoint(self.args.output_dir)
        raise NonFiniteLossError(
            f"{getattr(self.args, 'stage', 'training')} step {step}: {what}"
            + (f" (finite: {others})" if others else "")
            + f". Training stopped before this step's update; last checkpoint: {last or 'none'}. Usual causes: a "
            "learning rate too high, a temperature near 0, fp16 overflow (try bf16), empty or broken inputs"
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # loss parts are averaged into the training logs; evaluation logs carry the evaluation's metrics only
        if not any(k.startswith("eval_") for k in logs):
            for name, values in self._loss_parts.items():
                logs[name] = sum(values) / len(values)
            for part in LM_PARTS:
                if part in logs:  # the part is the token cross-entropy itself: its perplexity is exp of it
                    logs["perplexity"] = math.exp(min(logs[part], 50.0))
            self._loss_parts.clear()
        super().log(logs, start_time)

    def log_evaluation(self, metrics: dict[str, float]) -> dict[str, float]:
        """The end of ``evaluate``: log the metrics; the callbacks (best checkpoint, early stopping) see them."""
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ---- runs ----
    def train_and_save(self):
        """Train (resuming from the last complete checkpoint in ``output_dir`` unless ``resume`` is off), then save
        the final model, the training metrics and the trainer state there."""
        last = last_complete_checkpoint(self.args.output_dir) if self.args.resume else None
        if self.args.should_save:  # what killed saves left: never taken for a checkpoint, only in the way
            remove(os.path.join(self.args.output_dir, STAGING_DIR))
            remove_leftovers(self.args.output_dir)
        if last and run_has_ended(last, self.args.max_steps):
            logger.info("%s ended the run: nothing left to train", last)
            metrics = self._restore_ended_run(last)
        else:
            if last:
                logger.info("resuming from %s", last)
            metrics = self.train(resume_from_checkpoint=last).metrics
        self.log_metrics("train", metrics)
        self.save_metrics("train", metrics)
        self.save_model(self.args.output_dir)
        self.save_state()
        return metrics

    def _restore_ended_run(self, checkpoint: str) -> dict[str, float]:
        """Leave the trainer as ``train`` left it when the run ended at ``checkpoint`` (the best model loaded if
        asked); ``Trainer.train`` resumed there would take one optimizer step past ``max_steps``."""
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        self._load_from_checkpoint(checkpoint)
        best = self.state.best_model_checkpoint
        if self.args.load_best_model_at_end and best and os.path.isdir(best):
            self._load_best_model()
        return {"epoch": self.state.epoch, "train_steps_this_launch": 0}

    # ---- checkpoints: trainable weights + model config, and the training files ----
    def save_extra_state(self, output_dir: str) -> None:
        """State beside the weights that a resumed run needs (none by default)."""

    def load_extra_state(self, checkpoint_dir: str, model) -> None:
        """Read back what ``save_extra_state`` wrote."""

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        # under FSDP the Trainer passes the whole weights, gathered on every process (the model holds shards)
        model = self.accelerator.unwrap_model(self.model)
        model.save_pretrained(output_dir, extra_config=self.extra_config, state_dict=state_dict)
        self.save_extra_state(output_dir)
        save_training_files(self, output_dir)

    def _get_output_dir(self, trial) -> str:
        # while a checkpoint is being written, the Trainer writes it under the staging folder (see _save_checkpoint)
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write ``checkpoint-N`` under ``.incomplete/`` and rename it into place once every process has written its
        part, so a folder named ``checkpoint-N`` is always whole. A failed write (a full disk) removes the partial
        folder and leaves the earlier checkpoints as they were."""
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_DIR)
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.args.should_save:
            remove(staged)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
        except Exception as e:
            remove(staged)
            remove_if_empty(staging)
            if isinstance(e, OSError) or is_out_of_space(e):
                last = last_complete_checkpoint(run_dir)
                fix = "free some space" if is_out_of_space(e) else "fix the cause"
                raise WriteFailedError(
                    f"could not write {final} ({e}); nothing of it was kept. The earlier checkpoints are intact "
                    f"(the last: {last or 'none'}): {fix} and run the same command again to resume"
                ) from e
            raise
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if self.state.best_model_checkpoint == staged:  # the Trainer saw the best checkpoint under its staged name
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
            replace_dir(staged, final)
            remove_if_empty(staging)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model or self.accelerator.unwrap_model(self.model)
        model.load_trainable_weights(resume_from_checkpoint)
        self.load_extra_state(resume_from_checkpoint, model)

    def _load_best_model(self) -> None:
        logger.info("loading the best checkpoint %s (%s)", self.state.best_model_checkpoint, self.state.best_metric)
        self.accelerator.unwrap_model(self.model).load_trainable_weights(self.state.best_model_checkpoint)
