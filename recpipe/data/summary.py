"""The prepared data in a few lines: how much there was, how much survived each filter, and the splits. Printed by
``recpipe data prepare`` and logged at the start of every training run."""

from __future__ import annotations


def stats_lines(stats: dict) -> list[str]:
    """Lines for a ``stats.json``: raw and filtered counts, what each filter dropped, the splits, the tie-break."""
    raw, filt = stats["raw"], stats["filtered"]
    lines = [
        f"raw:      {raw['users']:>8,} users  {raw['items']:>8,} items  {raw['interactions']:>10,} interactions",
        f"filtered: {filt['users']:>8,} users  {filt['items']:>8,} items  {filt['interactions']:>10,} interactions",
    ]
    splits = stats.get("splits")
    if splits:
        lines.append(
            f"splits:   train {splits['train_interactions']:,} interactions of {splits['train_users']:,} users; "
            f"valid {splits['valid_examples']:,}; test {splits['test_examples']:,}"
            + (f"; test_cold {splits['test_cold_examples']:,}" if "test_cold_examples" in splits else "")
            + f"; pretrain corpus {splits['pretrain_texts']:,} item texts"
        )
    dropped = {k: v for k, v in {**stats.get("filtered_out", {}), **stats.get("skipped_records", {})}.items() if v}
    if dropped:
        lines.append("dropped:  " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()))
    if "tie_break" in stats:
        lines.append(f"tie-break: {stats['tie_break']}")
    return lines
