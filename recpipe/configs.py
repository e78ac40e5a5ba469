"""The retrieval task's configuration: the command-line dataclasses (data, model with PEFT fields, training =
``TrainingArguments`` + recpipe fields) and the small model config a checkpoint saves, apart from them.

Every field of the dataclasses maps one to one onto a key of the YAML recipes and onto a ``--flag`` of the command
line; ``RecModelConfig`` holds only what rebuilds the model, so a flag can be renamed without breaking checkpoints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal

from recpipe.backbone import PACKAGED_MINILM, BackboneConfig
from recpipe.base import BaseModelArguments, BaseTrainingArguments
from recpipe.data import default_template
from recpipe.data.prepare import PrepareConfig
from recpipe.errors import InvalidInputError


@dataclass
class DataArguments(PrepareConfig):
    """Which dataset, where its files are, and how it is prepared (the fields of ``PrepareConfig``)."""

    dataset: str = field(default="movielens-100k", metadata={"help": "movielens-100k, movielens-1m, amazon2023, ..."})
    data_dir: str | None = field(default=None, metadata={"help": "Raw files (default: fetch cache for embedded)."})
    category: str | None = field(default=None, metadata={"help": "Amazon category, e.g. All_Beauty."})
    prepared_dir: str | None = field(
        default=None, metadata={"help": "Where the prepared DatasetDict lives (default: data/prepared/<dataset>)."}
    )
    template: str | None = field(
        default=None,
        metadata={"help": "Item text template (default: the dataset's own; auto for generic: every text column)."},
    )
    interactions: str | None = field(
        default=None, metadata={"help": "generic: the interactions file (csv/tsv/jsonl/parquet)."}
    )
    items: str | None = field(default=None, metadata={"help": "generic: the items file (their text columns)."})
    columns: str | None = field(
        default=None,
        metadata={"help": 'generic: JSON map of canonical to file column names, e.g. {"user_id": "uid"}.'},
    )
    item_text_fields: list[str] | None = field(
        default=None, metadata={"help": "generic: only these item columns make the item text (default: all)."}
    )

    def __post_init__(self):
        if self.template is None:
            self.template = default_template(self.dataset)
        if isinstance(self.columns, str):  # from the command line; a recipe may give a mapping
            try:
                self.columns = json.loads(self.columns)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"columns is not JSON ({e.msg}): {self.columns!r}") from None
        generic = self.interactions or self.items or self.columns or self.item_text_fields
        if generic and self.dataset != "generic":
            raise InvalidInputError("interactions, items, columns and item_text_fields are for dataset: generic")
        super().__post_init__()
        if self.prepared_dir is None:
            suffix = f"-{self.category}" if self.category else ""
            self.prepared_dir = os.path.join("data", "prepared", f"{self.dataset}{suffix}")

    def generic_files(self) -> dict:
        """``recpipe.data.generic.read_generic``'s arguments for ``dataset: generic`` (empty for the others)."""
        if self.dataset != "generic":
            return {}
        files = {
            "interactions_path": self.interactions,
            "items_path": self.items,
            "columns": self.columns,
            "item_text_fields": self.item_text_fields,
        }
        return {k: v for k, v in files.items() if v is not None}


@dataclass
class ModelArguments(BaseModelArguments):
    """The item tower (a Hugging Face encoder, optional ID embedding), the user tower and the PEFT adapter."""

    model_name_or_path: str = field(
        default=PACKAGED_MINILM,
        metadata={"help": f"Encoder for item text: {PACKAGED_MINILM} (offline default), a hub id or a folder."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "key", "value", "dense"],
        metadata={"help": "Module names that get adapters."},
    )
    use_text: bool = field(default=True, metadata={"help": "Item vectors from item text through the encoder."})
    use_item_ids: bool = field(default=False, metadata={"help": "Add a learned item-ID embedding (hybrid)."})
    hidden_size: int = field(default=128, metadata={"help": "Size of item and user vectors (after projection)."})
    user_layers: int = field(default=2, metadata={"help": "Layers of the causal user tower."})
    user_heads: int = field(default=2, metadata={"help": "Attention heads of the user tower."})
    user_dropout: float = field(default=0.2, metadata={"help": "Dropout in the user tower and on item vectors."})
    id_from_text: bool = field(
        default=False,
        metadata={
            "help": "Hybrid models: an item without a trained ID vector (never seen in training, added later, or left "
            "out by id_dropout) gets one predicted from its text by a learned linear map, trained by cold_loss "
            "(cold_weight) and through the rec loss on the items id_dropout leaves out."
        },
    )
    id_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Hybrid models: probability that an item's ID vector is left out of a training step, so that its "
            "text vector alone must rank it, as it must for items never seen in training (cold start)."
        },
    )
    user_ffn_size: int | None = field(
        default=None, metadata={"help": "Feed-forward width of the user tower's layers (default: 2 x hidden_size)."}
    )
    init_std: float = field(default=0.02, metadata={"help": "Std of the normal init of every tower weight."})
    max_text_length: int = field(default=32, metadata={"help": "Tokens per item text."})
    similarity: Literal["dot", "cos"] = field(
        default="dot", metadata={"help": "Score: dot product, or cosine (use with a temperature around 0.05)."}
    )
    inference_dtype: Literal["float32", "bfloat16"] = field(
        default="bfloat16", metadata={"help": "Autocast dtype when encoding the catalogue (eval and serving)."}
    )
    init_from: str | None = field(
        default=None, metadata={"help": "A recpipe checkpoint whose trainable weights initialise this model."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not self.use_text and not self.use_item_ids:
            raise InvalidInputError("at least one of use_text and use_item_ids must be true")
        if not 0.0 <= self.id_dropout < 1.0:
            raise InvalidInputError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if (self.id_dropout > 0 or self.id_from_text) and not (self.use_text and self.use_item_ids):
            raise InvalidInputError("id_dropout and id_from_text need a hybrid model (use_text and use_item_ids)")


@dataclass(kw_only=True)
class RecModelConfig(BackboneConfig):
    """What rebuilds a retrieval model (saved with its checkpoints); ``from_arguments(model_args, num_items=...,
    max_history=...)`` makes it from the command line."""

    num_items: int  # catalogue size, without the padding index 0
    max_history: int  # items the user tower reads
    use_text: bool = True  # item vectors from item text through the encoder
    use_item_ids: bool = False  # plus a learned item-ID embedding
    hidden_size: int = 128  # item and user vectors
    user_layers: int = 2
    user_heads: int = 2
    user_dropout: float = 0.2  # user tower and item vectors
    id_dropout: float = 0.0  # training: an item's ID vector left out with this probability (text alone ranks it)
    id_from_text: bool = False  # items without a trained ID vector get one predicted from their text
    user_ffn_size: int | None = None  # default 2 x hidden_size
    init_std: float = 0.02  # normal init of every tower weight
    max_text_length: int = 32  # tokens per item text
    similarity: str = "dot"  # dot | cos
    inference_dtype: str = "bfloat16"  # autocast dtype when encoding the catalogue without gradient


STAGES = ("pretrain", "finetune", "evaluate", "export", "robustness")


@dataclass
class RecTrainingArguments(BaseTrainingArguments):
    """``TrainingArguments`` plus the combined loss, negatives, item-vector cache and evaluation protocol."""

    loss_weight_names = ("rec_weight", "mlm_weight", "rel_weight", "cold_weight", "adv_weight")

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
    encoder_phase_schedule: bool = field(
        default=False,
        metadata={
            "help": "With frozen_encoder_steps > 0: the encoder's learning rate gets its own warmup and linear decay "
            "over the steps after frozen_encoder_steps, instead of the tail of the shared schedule (which would start "
            "the adapters at an already decayed rate). The towers keep the shared schedule."
        },
    )
    encoder_phase_towers: bool = field(
        default=True,
        metadata={
            "help": "With frozen_encoder_steps > 0: whether the towers and ID embeddings keep training in the encoder "
            "phase; false holds them where the cached-vector phase left them (learning rate 0), so the adapters fit "
            "the item text to fixed towers."
        },
    )
    pretrain_max_steps: int = field(default=200, metadata={"help": "Optimizer steps of the pretraining stage."})
    pretrain_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of pretraining (default: learning_rate)."}
    )
    rec_weight: float = field(default=1.0, metadata={"help": "Weight of the recommendation loss."})
    rel_weight: float = field(default=0.0, metadata={"help": "λ_rel: weight of the item-relation InfoNCE loss."})
    cold_weight: float = field(
        default=1.0,
        metadata={
            "help": "λ_cold: weight of cold_loss, the error of the ID vectors id_from_text predicts from the batch's "
            "item texts against their trained ones; it trains only that map. Applies when id_from_text is on."
        },
    )
    cold_loss_type: Literal["mse", "rank"] = field(
        default="mse",
        metadata={
            "help": "What cold_loss teaches id_from_text: mse regresses the batch's trained ID vectors; rank scores a "
            "random share (cold_rank_share) of the warm items, targets and negatives alike, as cold items are scored "
            "(projected text + predicted ID vector) among the others' trained vectors and takes the rec loss, with "
            "everything but the map detached: the predictions learn the scale at which they rank."
        },
    )
    cold_rank_share: float = field(
        default=0.5, metadata={"help": "cold_loss_type rank: share of the warm items scored as cold items each step."}
    )
    whole_word_masking: bool = field(default=False, metadata={"help": "Mask whole words rather than word pieces."})
    mlm_on_copy: bool = field(
        default=True,
        metadata={
            "help": "Item vectors from the unmasked text, the MLM part from a masked copy (a second encoder pass over "
            "the fresh items); false: one pass over the masked text, whose vectors then differ from the unmasked "
            "ones used at evaluation and serving."
        },
    )
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
    sparse_id_updates: bool = field(
        default=False,
        metadata={
            "help": "Large catalogues (use_item_ids with sampled or in-batch negatives): the ID embedding gets a "
            "sparse gradient, of the rows the step looked up, and only those rows are updated (lazy AdamW: a row's "
            "moments and weight decay move only at the steps that look it up). Off: every row is updated at every "
            "step, a cost that grows with the catalogue (1M x 128 rows). Needs optim adamw_torch(_fused), not FSDP."
        },
    )
    save_item_cache: bool = field(
        default=True,
        metadata={
            "help": "Save the item-vector cache with every checkpoint (num_items x encoder width floats: ~1.5 GB at "
            "1M items). Off: checkpoints hold no cache; a save makes the next step re-encode the catalogue from the "
            "saved weights, as a resumed run does, so resuming stays exact at the cost of one encoding per save."
        },
    )
    eval_ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={"help": "Cut-offs of the metrics."})
    exclude_history: bool = field(
        default=True, metadata={"help": "Exclude the user's known items from the ranking (recorded in results)."}
    )
    encode_batch_size: int = field(default=256, metadata={"help": "Batch size for encoding the item catalogue."})
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
        super().__post_init__()
        if self.temperature <= 0:
            raise InvalidInputError("temperature must be > 0")
        if not 0.0 < self.cold_rank_share <= 1.0:
            raise InvalidInputError(f"cold_rank_share must be in (0, 1], got {self.cold_rank_share}")
        if self.frozen_encoder_steps < 0:
            raise InvalidInputError("frozen_encoder_steps must be >= 0")
        if self.encoder_phase_schedule and self.frozen_encoder_steps == 0:
            raise InvalidInputError("encoder_phase_schedule needs frozen_encoder_steps > 0 (an encoder phase)")
        if not self.encoder_phase_towers and self.frozen_encoder_steps == 0:
            raise InvalidInputError("encoder_phase_towers false needs frozen_encoder_steps > 0 (an encoder phase)")
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise InvalidInputError(f"unknown stages {unknown}: choose from {list(STAGES)}")
        if self.sparse_id_updates and self.negatives == "full":
            raise InvalidInputError(
                "sparse_id_updates needs negatives sampled or in_batch: the full softmax reads every ID row each step"
            )
        if self.sparse_id_updates and self.optim not in ("adamw_torch", "adamw_torch_fused"):
            optim = getattr(self.optim, "value", self.optim)
            raise InvalidInputError(f"sparse_id_updates needs optim adamw_torch or adamw_torch_fused, not {optim}")
        if self.adversarial != "none" and (self.adv_epsilon <= 0 or self.adv_alpha <= 0 or self.adv_steps < 1):
            raise InvalidInputError("adversarial training needs adv_epsilon > 0, adv_alpha > 0 and adv_steps >= 1")
