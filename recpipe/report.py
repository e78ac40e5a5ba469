"""Plots beside a checkpoint, for users without a dashboard: training curves (each loss part, eval metrics) and,
for retrieval runs, metric@K curves of the test results. ``recpipe report DIR`` (several folders: ``recpipe
compare``). Works on retrieval and CTR runs alike."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recpipe.errors import MissingInputError

LOSS_PARTS = ("loss", "rec_loss", "ctr_loss", "mlm_loss", "lm_loss", "rel_loss", "adv_loss", "orth_loss")
EVAL_METRICS = {
    "retrieval": ("eval_ndcg@10", "eval_recall@10", "eval_mrr@10"),
    "ctr": ("eval_auc", "eval_gauc", "eval_f1"),
}


def run_task(run_dir: Path) -> str:
    return "ctr" if (run_dir / "ctr_config.json").is_file() else "retrieval"


def _state(run_dir: Path) -> list[dict]:
    path = run_dir / "trainer_state.json"
    if not path.is_file():
        raise MissingInputError(f"{run_dir} has no trainer_state.json: is it a recpipe output directory?")
    return json.loads(path.read_text())["log_history"]


def plot_training_curves(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    history = _state(run_dir)
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    for part in LOSS_PARTS:
        points = [(h["step"], h[part]) for h in history if part in h]
        if points:
            ax_loss.plot(*zip(*points), label=part, linewidth=1.5 if part == "loss" else 1)
    ax_loss.set(xlabel="step", ylabel="loss (total weighted; parts unweighted)", title="training loss")
    ax_loss.legend()
    task = run_task(run_dir)
    for key in EVAL_METRICS[task]:
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax_eval.plot(*zip(*points), marker="o", label=key)
    title = "validation (full ranking)" if task == "retrieval" else "validation"
    ax_eval.set(xlabel="step", ylabel="metric", title=title)
    if ax_eval.lines:
        ax_eval.legend()
    fig.tight_layout()
    out = run_dir / "training_curves.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_metrics_at_k(run_dir: str | Path, results_file: str = "test_results.json") -> Path | None:
    run_dir = Path(run_dir)
    path = run_dir / results_file
    if not path.is_file() or run_task(run_dir) == "ctr":  # a CTR model has no cut-off K
        return None
    metrics = json.loads(path.read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("recall", "ndcg", "mrr"):
        points = sorted(
            (int(m.group(1)), v) for k, v in metrics.items() if (m := re.fullmatch(rf"test_{name}@(\d+)", k))
        )
        if points:
            ax.plot(*zip(*points), marker="o", label=f"{name}@K")
    ax.set(xlabel="K", ylabel="metric", title="test metrics at K (full ranking)")
    ax.legend()
    fig.tight_layout()
    out = run_dir / "metrics_at_k.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(run_dir: str | Path) -> list[Path]:
    return [p for p in (plot_training_curves(run_dir), plot_metrics_at_k(run_dir)) if p is not None]
