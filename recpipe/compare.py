"""Runs side by side without a dashboard: ``recpipe compare OUTPUT_DIR...`` writes ``comparison.md`` and
``comparison.csv`` (one row per run: its test metrics, training time, and every setting that differs between the
runs) and ``comparison_curves.png`` (training loss and the validation metric of every run, overlaid).

It reads what every run leaves in its output folder: ``trainer_state.json``, ``test_results.json``,
``training_args.json`` and the checkpoint's config (retrieval or CTR).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from recpipe.errors import InvalidInputError, MissingInputError  # noqa: E402

HEADLINE = {
    "retrieval": ("test_ndcg@10", "test_recall@10", "test_mrr@10"),
    "ctr": ("test_auc", "test_gauc", "test_log_loss"),
}
VALIDATION = {"retrieval": "eval_ndcg@10", "ctr": "eval_auc"}
ALWAYS = ("dataset", "model_name_or_path", "peft_type")
# settings that differ between any two runs without telling them apart
IGNORED = {
    "output_dir",
    "run_name",
    "logging_dir",
    "prepared_dir",
    "prepared_dir_absolute",
    "data_dir",
    "hub_model_id",
    "hub_token",
    "resume",
    "num_processes",
}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_run(run_dir: str | Path) -> dict:
    """What ``compare_runs`` needs of one output folder: its task, settings, test metrics and log history."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingInputError(f"{run_dir}: no such run folder")
    config = _json(run_dir / "recpipe_config.json")
    task = "retrieval"
    if not config:
        config, task = _json(run_dir / "ctr_config.json"), "ctr"
    if not config:
        raise MissingInputError(f"{run_dir} is not a recpipe run (no recpipe_config.json or ctr_config.json)")
    training = _json(run_dir / "training_args.json")
    settings = {**config.get("data_args", {}), **config.get("model_config", {}), **training}
    state = _json(run_dir / "trainer_state.json")
    metrics = _json(run_dir / "test_results.json")
    train = _json(run_dir / "train_results.json")
    return {
        "dir": run_dir,
        "task": task,
        "settings": settings,
        "metrics": metrics,
        "train_runtime": train.get("train_runtime"),
        "steps": state.get("global_step"),
        "history": state.get("log_history", []),
    }


def _names(runs: list[dict]) -> list[str]:
    """Folder names, or whole paths where two folders share a name."""
    names = [r["dir"].name for r in runs]
    return names if len(set(names)) == len(names) else [str(r["dir"]) for r in runs]


def differing_settings(runs: list[dict]) -> list[str]:
    keys = sorted({k for r in runs for k in r["settings"]} - IGNORED)
    differ = []
    for key in keys:
        values = {json.dumps(r["settings"].get(key), sort_keys=True, default=str) for r in runs}
        if len(values) > 1:
            differ.append(key)
    return differ


def comparison_table(runs: list[dict]) -> tuple[list[str], list[list]]:
    """(columns, rows): run, task, headline test metrics, steps, runtime, then the settings that tell runs apart."""
    tasks = {r["task"] for r in runs}
    metrics = [m for task in ("retrieval", "ctr") if task in tasks for m in HEADLINE[task]]
    settings = [k for k in ALWAYS if any(k in r["settings"] for r in runs)]
    settings += [k for k in differing_settings(runs) if k not in settings]
    columns = ["run", "task", *metrics, "steps", "train_runtime_s", *settings]
    rows = []
    for name, r in zip(_names(runs), runs):
        rows.append(
            [name, r["task"], *(r["metrics"].get(m) for m in metrics), r["steps"], r["train_runtime"]]
            + [r["settings"].get(k) for k in settings]
        )
    return columns, rows


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value) if not isinstance(value, (list, dict)) else json.dumps(value)


def plot_curves(runs: list[dict], out: Path) -> Path:
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in zip(_names(runs), runs):
        loss = [(h["step"], h["loss"]) for h in r["history"] if "loss" in h and "step" in h]
        if loss:
            ax_loss.plot(*zip(*loss), label=name, linewidth=1)
        key = VALIDATION[r["task"]]
        points = [(h["step"], h[key]) for h in r["history"] if key in h]
        if points:
            ax_eval.plot(*zip(*points), marker="o", label=f"{name} ({key.removeprefix('eval_')})")
    ax_loss.set(xlabel="step", ylabel="training loss (total)", title="training loss")
    ax_eval.set(xlabel="step", ylabel="metric", title="validation")
    for ax in (ax_loss, ax_eval):
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def compare_runs(run_dirs: list[str | Path], output_dir: str | Path = "comparison") -> list[Path]:
    """Write the comparison of ``run_dirs`` into ``output_dir``; returns the paths written."""
    if len(run_dirs) < 2:
        raise InvalidInputError("compare needs at least two run folders")
    runs = [read_run(d) for d in run_dirs]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns, rows = comparison_table(runs)
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    return [out / "comparison.md", out / "comparison.csv", plot_curves(runs, out / "comparison_curves.png")]
