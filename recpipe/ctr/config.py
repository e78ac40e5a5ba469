"""The pointwise preference (CTR) task's configuration: the command-line dataclasses (data, model, training) and the
small model config its checkpoints save, apart from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recpipe.backbone import PACKAGED_MINILM, BackboneConfig
from recpipe.base import BaseModelArguments, BaseTrainingArguments
from recpipe.convert_gguf import PACKAGED_SMOLLM2
from recpipe.data.ctr import CTRConfig
from recpipe.errors import InvalidInputError

# each model family's default backbone and adapter targets
FAMILY_DEFAULTS = {
    "encoder": (PACKAGED_MINILM, ["query", "key", "value", "dense"]),
    "causal_lm": (PACKAGED_SMOLLM2, ["q_proj", "k_proj", "v_proj", "o_proj"]),
}


@dataclass
class CTRDataArguments(CTRConfig):
    """Which dataset, and how its rated interactions become yes/no examples (TALLRec protocol)."""

    dataset: str = field(default="movielens-100k", metadata={"help": "movielens-100k, movielens-1m, amazon2023, ..."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files (default: fetch cache for embedded)."})
    category: str | None = field(default=None, metadata={"help": "Amazon category, e.g. All_Beauty."})
    on_bad_record: Literal["error", "skip"] = field(
        default="error",
        metadata={"help": "Amazon / generic files: error stops at the first bad record; skip drops and counts."},
    )
    # a list, not a tuple, so that the command line can set it (CTRConfig turns it into a tuple)
    split_ratios: list[float] = field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        metadata={"help": "Shares of train/valid/test in a global chronological split of all examples."},
    )
    item_noun: str = field(default="movie", metadata={"help": "What the prompt calls an item (movie, product)."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example (the oldest history is cut first)."})
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "Evaluate on a fixed random subset of valid (for slow causal LMs)."}
    )
    max_test_examples: int | None = field(
        default=None, metadata={"help": "Evaluate on a fixed random subset of test (for slow causal LMs)."}
    )


@dataclass
class CTRModelArguments(BaseModelArguments):
    """The model family and its verbalizer; the PEFT fields as for the retrieval model."""

    model_family: Literal["encoder", "causal_lm"] = field(
        default="encoder", metadata={"help": "encoder: cross-encoder + head; causal_lm: prompt + yes/no verbalizer."}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": f"The backbone: a hub id or a folder; default {PACKAGED_MINILM} (encoder) or {PACKAGED_SMOLLM2} "
            "(causal_lm), both offline."
        },
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names that get adapters (default: the family's attention and output projections)."},
    )
    yes_token: str = field(default=" Yes", metadata={"help": "causal_lm: the answer meaning like (one token)."})
    no_token: str = field(default=" No", metadata={"help": "causal_lm: the answer meaning dislike (one token)."})
    head_dropout: float = field(default=0.1, metadata={"help": "encoder: dropout before the classification head."})
    history_feature: bool = field(
        default=False,
        metadata={
            "help": "Add a learned linear term of the history's like rate (smoothed log-odds) to the model's log-odds "
            "(wide & deep). The text already holds the marks; the term spares a small model learning to count them."
        },
    )
    item_feature: bool = field(
        default=False,
        metadata={
            "help": "Add the candidate's like rate among the training examples' marks (labels and history marks; "
            "smoothed log-odds; cross-fitted by user on training rows) to the wide term: item quality that a title "
            "alone does not tell."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        default_model, default_targets = FAMILY_DEFAULTS[self.model_family]
        if self.model_name_or_path is None:
            self.model_name_or_path = default_model
        if self.lora_target_modules is None:
            self.lora_target_modules = list(default_targets)


@dataclass(kw_only=True)
class CTRModelConfig(BackboneConfig):
    """What rebuilds a CTR model (saved with its checkpoints as ``model_config``)."""

    model_family: str = "encoder"  # encoder | causal_lm
    yes_token: str = " Yes"  # causal_lm verbalizers, one token each
    no_token: str = " No"
    head_dropout: float = 0.1  # encoder: before the classification head
    history_feature: bool = False  # wide term: the history's like rate
    item_feature: bool = False  # wide term: the candidate's like rate

    @property
    def wide_features(self) -> list[str]:
        """The batch columns the wide term reads, in order (none: no wide term)."""
        return ["history_like_logodds"] * self.history_feature + ["item_like_logodds"] * self.item_feature


@dataclass
class CTRTrainingArguments(BaseTrainingArguments):
    """``TrainingArguments`` plus the combined loss ``ctr_weight·L_ctr + mlm_weight·L_mlm + lm_weight·L_lm``
    (``mlm_weight``: encoder family; ``lm_weight``: causal LM family)."""

    loss_weight_names = ("ctr_weight", "mlm_weight", "lm_weight")

    ctr_weight: float = field(default=1.0, metadata={"help": "Weight of the yes/no (binary cross-entropy) loss."})
    lm_weight: float = field(default=0.1, metadata={"help": "causal_lm: λ_lm, LM loss on the prompt's item titles."})
    wide_learning_rate: float | None = field(
        default=0.05,
        metadata={"help": "Learning rate of the wide term (history_feature, item_feature); None: learning_rate."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.wide_learning_rate is not None and self.wide_learning_rate <= 0:
            raise InvalidInputError(f"wide_learning_rate must be > 0, got {self.wide_learning_rate}")
