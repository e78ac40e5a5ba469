"""The robustness report: ranking metrics of a trained model under perturbed inputs, beside the clean metrics.

Perturbations (each at every severity, with a fixed seed):

- item text: ``char_typos``, ``word_dropout``, ``word_swap``, ``casing``, ``truncation`` (:mod:`.perturbations`),
  applied to the whole catalogue's text, which is then re-encoded;
- ``drop_history``: items removed from the users' input histories (still excluded from the ranking as known items);
- ``embedding_attack``: a white-box first-order attack. The gradient of the split's next-item loss (the targets are
  known to the attacker) flows back through the user tower and the item vectors into each catalogue item's input
  word embeddings; every token is moved by ``severity · ‖e_t‖`` in the worst direction and the catalogue is
  re-encoded.

The table (perturbation, severity, metric, clean, perturbed, drop %) is written as JSON, Markdown and a PNG plot.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from recpipe.collators import EvalCollator, tokenize_items
from recpipe.errors import InvalidInputError
from recpipe.evaluation import evaluate_split
from recpipe.modeling import length_sorted_batches
from recpipe.robustness.adversarial import EmbeddingPerturbation, input_embeddings, unit
from recpipe.robustness.perturbations import TEXT_PERTURBATIONS, drop_history, perturb_texts

logger = logging.getLogger(__name__)
HISTORY_PERTURBATIONS = ("drop_history",)
ATTACKS = ("embedding_attack",)
ALL_PERTURBATIONS = (*TEXT_PERTURBATIONS, *HISTORY_PERTURBATIONS, *ATTACKS)


@dataclass
class RobustnessConfig:
    perturbations: list[str] = field(default_factory=lambda: list(ALL_PERTURBATIONS))
    severities: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5])
    metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "recall@10"])
    seed: int = 0
    split: str = "test"

    def __post_init__(self):
        unknown = sorted(set(self.perturbations) - set(ALL_PERTURBATIONS))
        if unknown:
            raise InvalidInputError(f"unknown perturbations {unknown}; choose from {list(ALL_PERTURBATIONS)}")
        if not self.severities or not all(0 < s <= 1 for s in self.severities):
            raise InvalidInputError(f"severities must lie in (0, 1], got {self.severities}")


def attacked_text_cache(
    model, split, item_tokens: dict, epsilon: float, batch_size: int = 256, temperature: float = 1.0
) -> torch.Tensor:
    """Pooled text states of the catalogue after the first-order embedding attack (``model.text_cache`` must hold
    the clean states; it is left as it was)."""
    was_training = model.training
    model.eval()
    device = model.text_cache.device
    # 1. d loss / d pooled text state of every item, through the user tower and the scores
    text = model.text_cache.detach().clone().requires_grad_(True)
    grad_text = torch.zeros_like(text)
    loader = DataLoader(
        split.add_column("row", list(range(len(split)))),
        batch_size=batch_size,
        collate_fn=EvalCollator(model.max_history),
    )
    with torch.enable_grad():
        for batch in loader:
            table = model.item_table(text=text)
            users = model.last_user_state(table, batch["input_items"].to(device))
            logits = model.scores(users, table[1:]) / temperature
            loss = F.cross_entropy(logits.float(), batch["targets"].to(device) - 1, reduction="sum")
            grad_text += torch.autograd.grad(loss, text)[0]
    # 2. chain it into each item's input word embeddings, step to the ε-ball's edge, re-encode
    perturbation = EmbeddingPerturbation(input_embeddings(model.encoder))
    attacked = model.text_cache.detach().clone()
    try:
        for rows in length_sorted_batches(item_tokens["attention_mask"], batch_size):
            with torch.enable_grad(), perturbation.probe():
                pooled = model.encode_items(item_tokens, rows, autocast=False)
                (grad,) = torch.autograd.grad(pooled, perturbation.delta, grad_outputs=grad_text[rows.to(device) + 1])
            delta = epsilon * perturbation.token_norms * unit(grad.float())
            with torch.no_grad(), perturbation.apply(delta):
                pooled = model.encode_items(item_tokens, rows)
            attacked[rows.to(device) + 1] = pooled.to(attacked.dtype)
    finally:
        perturbation.remove()
        model.train(was_training)
    return attacked


def robustness_report(
    model,
    dataset,
    tokenizer,
    config: RobustnessConfig,
    max_text_length: int,
    ks=(5, 10, 20),
    exclude_history: bool = True,
    batch_size: int = 256,
    temperature: float = 1.0,
) -> list[dict]:
    """Rows of (perturbation, severity, metric, clean, perturbed, drop_pct) for a prepared DatasetDict."""
    split = dataset[config.split]
    texts = list(dataset["items"]["text"])
    use_text = model.model_config.use_text and tokenizer is not None
    tokens = tokenize_items(texts, tokenizer, max_text_length) if use_text else None
    prefix = f"{config.split}_"
    wanted = [f"{prefix}{m}" for m in config.metrics]
    ks = sorted(set(ks) | {int(m.split("@")[1]) for m in config.metrics if "@" in m})

    def metrics_of(split_, tokens_, refresh=True):
        values = evaluate_split(model, split_, tokens_, ks, exclude_history, batch_size, prefix, refresh=refresh)
        missing = [m for m in wanted if m not in values]
        if missing:
            raise InvalidInputError(f"metrics {missing} are not computed; available: {sorted(values)}")
        return {m: values[m] for m in wanted}

    clean = metrics_of(split, tokens)
    clean_cache = model.text_cache.detach().clone() if use_text else None
    jobs = []
    for name in config.perturbations:
        if name not in HISTORY_PERTURBATIONS and not use_text:
            logger.warning("skipping %s: the model reads no item text", name)
            continue
        jobs += [(name, s) for s in config.severities]
    rows = []
    for name, severity in tqdm(jobs, desc="robustness"):
        if name in TEXT_PERTURBATIONS:
            noisy = perturb_texts(texts, name, severity, config.seed)
            perturbed = metrics_of(split, tokenize_items(noisy, tokenizer, max_text_length))
        elif name == "drop_history":
            histories = drop_history(list(split["history"]), severity, config.seed)
            thinned = split.remove_columns("history").add_column("history", histories)
            if use_text:
                model.text_cache.copy_(clean_cache)
            perturbed = metrics_of(thinned, tokens, refresh=False)
        else:
            model.text_cache.copy_(clean_cache)
            attacked = attacked_text_cache(model, split, tokens, severity, batch_size, temperature)
            model.text_cache.copy_(attacked)
            perturbed = metrics_of(split, tokens, refresh=False)
        for metric in wanted:
            drop = 100.0 * (clean[metric] - perturbed[metric]) / clean[metric] if clean[metric] else float("nan")
            rows.append(
                {
                    "perturbation": name,
                    "severity": severity,
                    "metric": metric.removeprefix(prefix),
                    "clean": clean[metric],
                    "perturbed": perturbed[metric],
                    "drop_pct": drop,
                }
            )
    if use_text:
        model.text_cache.copy_(clean_cache)
    return rows


def mean_drop(rows: list[dict], metric: str = "ndcg@10") -> float:
    """The average drop (%) of ``metric`` over every perturbation and severity: one number to compare models by."""
    drops = [r["drop_pct"] for r in rows if r["metric"] == metric]
    return sum(drops) / len(drops) if drops else float("nan")


def to_markdown(rows: list[dict]) -> str:
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    clean = {r["metric"]: r["clean"] for r in rows}
    lines = [
        "clean: " + ", ".join(f"{m} {clean[m]:.4f}" for m in metrics),
        "",
        "| perturbation | severity | " + " | ".join(f"{m} (drop %)" for m in metrics) + " |",
        "| --- | --- |" + " --- |" * len(metrics),
    ]
    cells: dict[tuple, dict] = {}
    for r in rows:
        cells.setdefault((r["perturbation"], r["severity"]), {})[r["metric"]] = r
    for (name, severity), by_metric in cells.items():
        values = [f"{by_metric[m]['perturbed']:.4f} ({by_metric[m]['drop_pct']:+.1f})" for m in metrics]
        lines.append(f"| {name} | {severity:g} | " + " | ".join(values) + " |")
    for m in metrics:
        lines.append(f"\nmean drop of {m} over all rows: {mean_drop(rows, m):.1f}%")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for name in dict.fromkeys(r["perturbation"] for r in rows):
        points = [(r["severity"], r["drop_pct"]) for r in rows if r["perturbation"] == name and r["metric"] == metric]
        ax.plot(*zip(*points), marker="o", label=name)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("severity")
    ax.set_ylabel(f"{metric} drop (%)")
    ax.set_title(f"robustness: {metric} drop under each perturbation")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a point
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_robustness(rows: list[dict], output_dir, config: RobustnessConfig, meta: dict | None = None) -> list[Path]:
    """robustness.json, robustness.md and robustness.png in ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"config": asdict(config), **(meta or {}), "rows": rows}
    json_path = out / "robustness.json"
    json_path.write_text(json.dumps(payload, indent=2))
    md_path = out / "robustness.md"
    md_path.write_text(to_markdown(rows))
    png_path = plot(rows, out / "robustness.png", rows[0]["metric"])
    return [json_path, md_path, png_path]


def log_to_wandb(rows: list[dict]) -> None:
    """The table (and the mean drop per metric) into the active W&B run, if there is one."""
    import wandb

    if wandb.run is None:
        return
    columns = ["perturbation", "severity", "metric", "clean", "perturbed", "drop_pct"]
    table = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
    summary = {f"robustness/mean_drop_{m}": mean_drop(rows, m) for m in dict.fromkeys(r["metric"] for r in rows)}
    wandb.log({"robustness/table": table, **summary})
