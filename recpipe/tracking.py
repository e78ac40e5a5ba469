"""W&B through ``report_to``: offline automatically when no API key is configured, and a table of example
recommendations (history titles → top-10 titles) at the end of fine-tuning."""

from __future__ import annotations

import logging
import netrc
import os

import torch

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
        logger.warning("no W&B API key: logging offline; `wandb sync` uploads the run later")
    return True


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
    if offline:
        print(f"W&B run saved offline; upload it with:\n  wandb sync {run_dir}", flush=True)


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
