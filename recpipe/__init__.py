"""recpipe: recommenders on top of pretrained language models, with the Hugging Face stack.

The main names load lazily (``import recpipe`` stays cheap)::

    from recpipe import Recommender, RecTrainer, CTRTrainer
    rec = recpipe.Recommender.from_pretrained("outputs/movielens-100k-lora")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Recommender": "recpipe.recommender",
    "RecModel": "recpipe.modeling",
    "RecModelConfig": "recpipe.configs",
    "RecTrainer": "recpipe.trainer",
    "DataArguments": "recpipe.configs",
    "ModelArguments": "recpipe.configs",
    "RecTrainingArguments": "recpipe.configs",
    "load_checkpoint": "recpipe.modeling",
    "CTRTrainer": "recpipe.ctr.trainer",
    "CTRModelConfig": "recpipe.ctr.config",
    "CTRDataArguments": "recpipe.ctr.config",
    "CTRModelArguments": "recpipe.ctr.config",
    "CTRTrainingArguments": "recpipe.ctr.config",
    "load_ctr_checkpoint": "recpipe.ctr.modeling",
    "RecipeParser": "recpipe.parser",
    "UserError": "recpipe.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recpipe' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
