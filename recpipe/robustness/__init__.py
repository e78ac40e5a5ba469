"""Robustness: adversarial training on the encoder's input embeddings (:mod:`.adversarial`), input perturbations
(:mod:`.perturbations`) and the robustness report of a trained model (:mod:`.report`)."""

from recpipe.robustness.report import (
    ALL_PERTURBATIONS,
    RobustnessConfig,
    log_to_wandb,
    mean_drop,
    robustness_report,
    to_markdown,
    write_robustness,
)

__all__ = [
    "ALL_PERTURBATIONS",
    "RobustnessConfig",
    "log_to_wandb",
    "mean_drop",
    "robustness_report",
    "to_markdown",
    "write_robustness",
]
