"""Run tracking through ``report_to``: W&B (offline automatically when no API key is configured) and TensorBoard.

Every run carries its full configuration — data, model, PEFT and training settings, and how much data survived the
filters — so runs group and filter by any of them: the Trainer's W&B integration logs ``TrainingArguments`` only,
and ``RunConfigCallback`` adds the rest to the W&B config and to TensorBoard's hparams. TensorBoard logs go to
``<output_dir>/runs/<run_name>``, so ``tensorboard --logdir outputs`` labels runs by name. At the end of fine-tuning,
a W&B table of example recommendations (history titles → top-10 titles).
"""

from __future__ import annotations

import dataclasses
import logging
import netrc
import os

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def configure_wandb(report_to: list[str]) -> bool:
    """Returns whether W&B is on; switches it to offline mode when no key is configured (and none was chosen)."""
    if "wandb" not in (report_to or []):
        return False
    if "WANDB_MODE" not in os.environ and not _has_wandb_key():
        os.environ["WANDB_MODE"] = "offline"
        logger.warning("no W&B API key: logging offline (`wandb leet` shows the run, `wandb sync` uploads it)")
    return True


def run_config(data_args, model_args, stats: dict | None = None, **extra) -> dict:
    """The settings a run is told apart by, beside its ``TrainingArguments``: every data and model (PEFT) field under
    its own name (the recipe keys), the counts that survived the filters (``data/users``, ...), and ``extra``."""
    import recpipe

    config = {**dataclasses.asdict(data_args), **dataclasses.asdict(model_args)}
    for key, value in ((stats or {}).get("filtered") or {}).items():
        config[f"data/{key}"] = value
    config["recpipe_version"] = recpipe.__version__
    config.update(extra)
    return config


def _hparam_value(value):
    """TensorBoard's hparams take numbers, strings and booleans only."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class RunConfigCallback(TrainerCallback):
    """Adds ``config`` to the run's W&B config and writes it with the training arguments as TensorBoard hparams
    (with ``metrics``: the scalar tags the hparams table shows, e.g. ``eval/ndcg@10``)."""

    def __init__(self, config: dict, metrics: list[str], tensorboard=None):
        self.config, self.metrics, self.tensorboard = config, metrics, tensorboard

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if "wandb" in (args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.run.config.update(self.config, allow_val_change=True)
        writer = getattr(self.tensorboard, "tb_writer", None)
        if writer is not None:
            from torch.utils.tensorboard.summary import hparams

            values = {k: _hparam_value(v) for k, v in {**args.to_sanitized_dict(), **self.config}.items()}
            for summary in hparams(values, dict.fromkeys(self.metrics, 0.0)):
                writer._get_file_writer().add_summary(summary)


def wire_run_tracking(trainer, config: dict, metrics: list[str]) -> None:
    """Name the TensorBoard folder by ``run_name`` and add ``RunConfigCallback`` to ``trainer``."""
    from transformers.integrations import TensorBoardCallback

    tensorboard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    if tensorboard is not None and tensorboard.logging_dir is None:  # TENSORBOARD_LOGGING_DIR still wins
        tensorboard.logging_dir = os.path.join(trainer.args.output_dir, "runs", trainer.args.run_name)
    trainer.add_callback(RunConfigCallback(config, metrics, tensorboard))


def finish_wandb() -> None:
    """Close the run (flushing its files) and say how to upload an offline run."""
    import wandb

    run = wandb.run
    if run is None:
        return
    offline = (
        run.settings.mode == "offline" if hasattr(run.settings, "mode") else os.environ.get("WANDB_MODE") == "offline"
    )
    run_dir = os.path.dirname(run.dir)
    wandb.finish()
    # finish() can return before the W&B service has written the last records of an offline run; teardown waits
    # for it, so the run's files are complete when training returns (for `wandb sync`, `wandb leet`, tests)
    wandb.teardown()
    if offline:
        print(
            f"W&B run saved offline in {run_dir}: look at it with `wandb leet {run_dir}`; upload it with "
            f"`wandb sync {run_dir}`",
            flush=True,
        )


@torch.no_grad()
def log_example_recommendations(model, split, items, table: torch.Tensor, n_users: int = 8, k: int = 10) -> None:
    """A W&B Table: for a few test users, their last history titles and the model's top-``k`` titles."""
    import wandb

    if wandb.run is None:
        return
    titles = ["", *items["title"]]
    rows = []
    for example in split.select(range(min(n_users, len(split)))):
        history = torch.tensor([example["history"][-model.max_history :]])
        state = model.last_user_state(table, history)
        scores = model.scores(state, table)[0]
        scores[0] = -torch.inf
        scores[example["known_items"]] = -torch.inf
        top = scores.topk(k).indices.tolist()
        rows.append(
            [
                example["user_id"],
                " | ".join(titles[i] for i in example["history"][-5:]),
                " | ".join(titles[i] for i in top),
                titles[example["target"]],
                example["target"] in top,
            ]
        )
    columns = ["user_id", "last 5 history titles", f"top-{k} titles", "held-out target", "hit"]
    wandb.log({"example_recommendations": wandb.Table(columns=columns, data=rows)})
