"""Turn ``bench/results/`` into the tables of BENCHMARKS.md (between the AUTO markers) and a PNG plot.

python bench/report.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
METRICS = ("test_ndcg@10", "test_recall@10", "test_mrr@10")
COLD = ("test_cold_ndcg@10", "test_cold_recall@10")


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


ORDER = ("popularity", "item-knn", "sasrec-id")

# A peer measured on this machine on the same split under the same protocol (shared/NOTES.md: RecBole 1.2.1, full
# ranking, known items masked, ties pessimistic): test NDCG@10, Recall@10, MRR@10. Measured once, not by this repo.
PEERS = {
    "movielens-100k": {
        "RecBole SASRec (peer)": (0.1081, 0.2047, 0.0790),
        "RecBole BERT4Rec (peer)": (0.1005, 0.1962, 0.0717),
        "RecBole BPR (peer)": (0.0594, 0.1177, 0.0420),
    }
}
PEER_REFERENCE = "RecBole SASRec (peer)"


def _variant_dirs(folder: Path) -> list[Path]:
    dirs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return sorted(dirs, key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name))


def quality_table(dataset: str) -> tuple[str, dict[str, float]]:
    """Mean ± std over seeds per variant, beside the peer rows; the ratio column compares with the peer's SASRec
    where one was measured on this dataset, else with recpipe's own ``sasrec-id``."""
    runs_by_variant = {
        v.name: [json.loads(p.read_text()) for p in sorted(v.glob("seed*.json"))]
        for v in _variant_dirs(RESULTS / "quality" / dataset)
    }
    means = {name: statistics.mean(r["test_ndcg@10"] for r in runs) for name, runs in runs_by_variant.items() if runs}
    peers = PEERS.get(dataset, {})
    own = next((name for name in ("sasrec-id", "sasrec-id-long") if name in means), "sasrec-id")
    reference_name = PEER_REFERENCE if peers else own
    reference = peers[PEER_REFERENCE][0] if peers else means.get(own)
    rows = []
    for name, values in peers.items():
        rows.append(f"| {name} | – | " + " | ".join(f"{v:.4f}" for v in values) + " | – | – | – |")

    for name, runs in runs_by_variant.items():
        if not runs:
            continue
        cells = [_fmt([r[m] for r in runs if m in r]) for m in METRICS]
        versus = f"{means[name] / reference:.2f}x" if reference else "–"
        valid = _fmt([r["best_valid_ndcg@10"] for r in runs if r.get("best_valid_ndcg@10") is not None])
        walls = [r["wall_s"] for r in runs if "wall_s" in r]
        wall = f"{statistics.mean(walls):.0f}" if walls else "–"
        rows.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {valid} | {versus} | {wall} |")
    header = (
        f"| variant | seeds | NDCG@10 | Recall@10 | MRR@10 | best valid NDCG@10 | NDCG@10 vs {reference_name} "
        "| wall s / run |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    return header + "\n" + "\n".join(rows), means


def backbone_table(dataset: str = "movielens-100k") -> str | None:
    """The backbone ablations (``bench/backbone.py``): each one setting moved from recpipe's towards the peer's."""
    rows = []
    for variant in _variant_dirs(RESULTS / "backbone" / dataset):
        runs = [json.loads(p.read_text()) for p in sorted(variant.glob("seed*.json"))]
        if not runs:
            continue
        test = _fmt([r["test_ndcg@10"] for r in runs])
        valid = _fmt([r["best_valid_ndcg@10"] for r in runs])
        wall = statistics.mean(r["wall_s"] for r in runs)
        rows.append(f"| {variant.name} | {len(runs)} | {valid} | {test} | {wall:.0f} |")
    if not rows:
        return None
    header = "| ablation | seeds | best valid NDCG@10 | test NDCG@10 | wall s / run |\n| --- | --- | --- | --- | --- |"
    return header + "\n" + "\n".join(rows)


# The method issue's ablation: the default recipe against itself with one part removed (or added), each by the
# variant of bench/quality.py that differs from it in that part alone (the pretraining row also runs MLM, on the
# masked text, as the recipe did before ``mlm_on_copy``).
DEFAULT_RECIPE = "text+id-lora-2phase-mlm0"
ABLATIONS = (
    ("the `make train` recipe (cached-vector phase, then LoRA; no MLM)", DEFAULT_RECIPE),
    ("with the MLM part (λ_mlm = 0.1, on a masked copy)", "text+id-lora-2phase"),
    ("with item-relation + MLM pretraining first, then MLM", "text+id-lora-2phase-pretrain"),
    ("without the adapter phase (encoder frozen, text encoded once)", "text+id-frozen"),
    ("without text (ID-only)", "sasrec-id"),
)


def ablation_table(dataset: str = "movielens-100k") -> str | None:
    """Each part's effect on test NDCG@10: mean ± std over seeds, and the difference of means against the default
    beside the larger of the two spreads (a part pays only if its difference exceeds that)."""

    def runs(variant: str) -> list[float]:
        folder = RESULTS / "quality" / dataset / variant
        return [json.loads(p.read_text())["test_ndcg@10"] for p in sorted(folder.glob("seed*.json"))]

    default = runs(DEFAULT_RECIPE)
    if len(default) < 2:
        return None
    rows = []
    for label, variant in ABLATIONS:
        values = runs(variant)
        if not values:
            continue
        spread = max(statistics.stdev(default), statistics.stdev(values) if len(values) > 1 else 0.0)
        diff = "–" if variant == DEFAULT_RECIPE else f"{statistics.mean(values) - statistics.mean(default):+.4f}"
        rows.append(f"| {label} | `{variant}` | {len(values)} | {_fmt(values)} | {diff} | {spread:.4f} |")
    peer = PEERS.get(dataset, {}).get(PEER_REFERENCE)
    if peer:  # the standard to beat, measured on the same split under the same protocol
        diff = peer[0] - statistics.mean(default)
        rows.append(f"| {PEER_REFERENCE}, same split and protocol | – | – | {peer[0]:.4f} | {diff:+.4f} | – |")
    header = "| recipe | variant | seeds | test NDCG@10 | vs the recipe | larger std |\n" + "| --- " * 6 + "|"
    return header + "\n" + "\n".join(rows)


def cold_table(dataset: str) -> str | None:
    rows = []
    for variant in _variant_dirs(RESULTS / "cold" / dataset):
        runs = [json.loads(p.read_text()) for p in sorted(variant.glob("seed*.json"))]
        if runs:
            warm = _fmt([r["test_ndcg@10"] for r in runs])
            cold = [_fmt([r[m] for r in runs if m in r]) for m in COLD]
            chance = runs[0].get("chance_recall@10", "–")
            rows.append(f"| {variant.name} | {len(runs)} | {warm} | {cold[0]} | {cold[1]} | {chance} |")
    if not rows:
        return None
    header = (
        "| variant | seeds | warm NDCG@10 | cold NDCG@10 | cold Recall@10 | chance Recall@10 |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    return header + "\n" + "\n".join(rows)


TALLREC_MOVIE_AUC = {"16": 67.24, "64": 67.48, "256": 71.98}  # published, LLaMA-7B + LoRA, ML-100K
SHOTS = ("16", "64", "256", "all")


CTR_LABELS = {
    "encoder": "MiniLM cross-encoder + LoRA (recpipe)",
    "encoder+history-shared-lr": "MiniLM cross-encoder + LoRA + like-rate term on the model's lr (recpipe)",
    "encoder+history": "MiniLM cross-encoder + LoRA + like-rate term (recpipe)",
    "encoder+wide-loo": "MiniLM cross-encoder + LoRA + like-rate terms, item rate leave-one-out (recpipe)",
    "encoder+wide-ordered": "MiniLM cross-encoder + LoRA + like-rate terms, item rate of earlier labels (recpipe)",
    "encoder+wide": "MiniLM cross-encoder + LoRA + like-rate terms, item rate from all marks (recpipe)",
    "causal_lm": "SmolLM2-135M + LoRA (recpipe)",
    "causal_lm+history": "SmolLM2-135M + LoRA + like-rate term (recpipe)",
    "causal_lm+wide": "SmolLM2-135M + LoRA + like-rate terms, history and item (recpipe)",
}


def _auc_values(variant: str, shots: str, key: str | None = None) -> list[float]:
    """Test AUC × 100 of every seed of ``bench/results/ctr/<variant>/<shots>/`` (``key``: a baseline's name)."""
    paths = sorted((RESULTS / "ctr" / variant / shots).glob("seed*.json"))
    return [100 * (d[key]["test_auc"] if key else d["test_auc"]) for d in (json.loads(p.read_text()) for p in paths)]


def _auc_cell(variant: str, shots: str, key: str | None = None) -> str:
    values = _auc_values(variant, shots, key)
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def ctr_table() -> str | None:
    folder = RESULTS / "ctr"
    if not folder.is_dir():
        return None
    rows = ["| model | " + " | ".join(f"{s} shots" if s != "all" else "all data" for s in SHOTS) + " |"]
    rows.append("| --- |" + " --- |" * len(SHOTS))
    rows.append(
        "| TALLRec, LLaMA-7B + LoRA (published) | "
        + " | ".join(f"{TALLREC_MOVIE_AUC[s]:.2f}" if s in TALLREC_MOVIE_AUC else "–" for s in SHOTS)
        + " |"
    )
    for name in ("history_like_rate", "item_like_rate", "logistic_regression"):
        cells = [_auc_cell("baselines", s, name) for s in SHOTS]
        rows.append(f"| baseline: {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    for variant, label in CTR_LABELS.items():
        cells = [_auc_cell(variant, s) for s in SHOTS]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


CTR_PLOTTED = {  # label: (results folder, baseline key or None for a model)
    "history like rate (no training)": ("baselines", "history_like_rate"),
    "logistic regression on the like rates": ("baselines", "logistic_regression"),
    "MiniLM + LoRA": ("encoder", None),
    "MiniLM + LoRA + like-rate terms": ("encoder+wide", None),
    "SmolLM2-135M + LoRA": ("causal_lm", None),
    "SmolLM2-135M + LoRA + like-rate terms": ("causal_lm+wide", None),
}


def ctr_plot() -> Path | None:
    """Test AUC against the number of training examples, mean ± std over seeds, beside TALLRec's published AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = list(range(len(SHOTS)))
    plotted = False
    for i, (label, (variant, key)) in enumerate(CTR_PLOTTED.items()):
        shift = 0.04 * (i - len(CTR_PLOTTED) / 2)  # side by side, so that error bars at one x do not hide each other
        points = [(x + shift, _auc_values(variant, s, key)) for x, s in zip(xs, SHOTS)]
        points = [(x, v) for x, v in points if v]
        if not points:
            continue
        means = [statistics.mean(v) for _, v in points]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points]
        style = "--" if variant == "baselines" else "-"
        line = ax.errorbar([x for x, _ in points], means, yerr=stds, fmt=style + "o", capsize=3, label=label)
        single = [(x, m) for (x, v), m in zip(points, means) if len(v) == 1]
        if single:  # one seed: no spread to show, so a hollow marker says so
            ax.plot(*zip(*single), "o", mfc="white", color=line[0].get_color(), zorder=3)
        plotted = True
    if not plotted:
        plt.close(fig)
        return None
    tallrec = [(x, TALLREC_MOVIE_AUC[s]) for x, s in zip(xs, SHOTS) if s in TALLREC_MOVIE_AUC]
    ax.plot(*zip(*tallrec), "k*", markersize=12, label="TALLRec, LLaMA-7B + LoRA (published)")
    ax.axhline(50, color="grey", lw=0.5)
    ax.set_xticks(xs, [f"{s} shots" if s != "all" else "all data" for s in SHOTS])
    ax.set(
        ylabel="test AUC × 100 (mean ± std over seeds)",
        title="MovieLens-100K, TALLRec protocol (hollow: one seed)",
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = RESULTS / "ctr_auc.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def robustness_table(dataset: str = "movielens-100k") -> str | None:
    """NDCG@10 under each perturbation for each variant, averaged over the seeds that have a report."""
    folder = RESULTS / "robustness" / dataset
    reports: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("*/seed*.json")):
        reports.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
    if not reports:
        return None
    names = list(reports)
    cells: dict[tuple, dict[str, str]] = {}
    clean, mean_drop, groups = {}, {}, {}
    for name, runs in reports.items():
        rows_by_seed = [[r for r in run["rows"] if r["metric"] == "ndcg@10"] for run in runs]
        clean[name] = _fmt([rows[0]["clean"] for rows in rows_by_seed])
        mean_drop[name] = statistics.mean(statistics.mean(r["drop_pct"] for r in rows) for rows in rows_by_seed)
        by_key: dict[tuple, list[dict]] = {}
        for rows in rows_by_seed:
            for r in rows:
                by_key.setdefault((r["perturbation"], r["severity"]), []).append(r)
        for key, rs in by_key.items():
            perturbed = statistics.mean(r["perturbed"] for r in rs)
            drop = statistics.mean(r["drop_pct"] for r in rs)
            cells.setdefault(key, {})[name] = f"{perturbed:.4f} ({drop:+.1f}%)"
            groups.setdefault(name, {}).setdefault(
                "text" if key[0] not in ("drop_history", "embedding_attack") else key[0], []
            ).append(drop)
    seeds = {n: len(r) for n, r in reports.items()}
    lines = [
        "| perturbation | severity | "
        + " | ".join(f"{n} ({seeds[n]} seed{'s' * (seeds[n] > 1)})" for n in names)
        + " |",
        "| --- | --- |" + " --- |" * len(names),
    ]
    lines.append("| none (clean) | – | " + " | ".join(clean[n] for n in names) + " |")
    for (pert, sev), by_name in cells.items():
        lines.append(f"| {pert} | {sev:g} | " + " | ".join(by_name.get(n, "–") for n in names) + " |")
    for group in ("text", "drop_history", "embedding_attack"):
        values = [f"{statistics.mean(groups[n][group]):.1f}%" if group in groups[n] else "–" for n in names]
        label = "text perturbations (15 rows)" if group == "text" else group
        lines.append(f"| mean drop: {label} | | " + " | ".join(values) + " |")
    lines.append("| **mean drop, all rows** | | " + " | ".join(f"**{mean_drop[n]:.1f}%**" for n in names) + " |")
    return "\n".join(lines)


def plot(dataset: str, means: dict[str, float]) -> None:
    if not means:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(means, key=means.get)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1))
    ax.barh(names, [means[n] for n in names])
    ax.set(xlabel="test NDCG@10 (full ranking, mean over seeds)", title=dataset)
    fig.tight_layout()
    fig.savefig(RESULTS / f"quality_{dataset}.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parts = []
    for dataset in ("movielens-100k", "movielens-1m"):
        table, means = quality_table(dataset)
        if means:
            plot(dataset, means)
            parts.append(f"#### {dataset}\n\n{table}\n\n![{dataset}](bench/results/quality_{dataset}.png)")
        cold = cold_table(dataset)
        if cold:
            parts.append(f"#### {dataset}, cold-start split\n\n{cold}")
    path = ROOT / "BENCHMARKS.md"
    text = replace_block(path.read_text(), "quality", "\n\n".join(parts))
    ctr = ctr_table()
    if ctr:
        figure = ctr_plot()
        if figure:
            ctr += f"\n\n![CTR AUC]({figure.relative_to(ROOT)})"
        text = replace_block(text, "ctr", ctr)
    backbone = backbone_table()
    if backbone and "<!-- AUTO:backbone:start -->" in text:
        text = replace_block(text, "backbone", backbone)
    ablation = ablation_table()
    if ablation and "<!-- AUTO:ablation:start -->" in text:
        text = replace_block(text, "ablation", ablation)
    robust = robustness_table()
    if robust:
        text = replace_block(text, "robustness", robust)
    path.write_text(text)
    print(f"updated {path}")


def replace_block(text: str, name: str, content: str) -> str:
    """Put ``content`` between the ``<!-- AUTO:name:start -->`` and ``<!-- AUTO:name:end -->`` markers."""
    start, end = f"<!-- AUTO:{name}:start -->", f"<!-- AUTO:{name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"BENCHMARKS.md lacks the {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + content + "\n" + end + tail


if __name__ == "__main__":
    main()
