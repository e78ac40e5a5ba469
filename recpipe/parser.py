"""Recipes: a YAML file gives the defaults, command-line flags override them, unknown keys are errors.

An ``env:`` block in the YAML sets environment variables (e.g. ``WANDB_PROJECT``) before anything else runs; a
variable already set in the shell wins (``WANDB_PROJECT=mine make train``).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import yaml
from transformers import HfArgumentParser

from recpipe.configs import DataArguments, ModelArguments, RecTrainingArguments
from recpipe.ctr.config import CTRDataArguments, CTRModelArguments, CTRTrainingArguments
from recpipe.errors import InvalidInputError

DATACLASSES = (DataArguments, ModelArguments, RecTrainingArguments)
CTR_DATACLASSES = (CTRDataArguments, CTRModelArguments, CTRTrainingArguments)


class RecipeParser(HfArgumentParser):
    def __init__(self, dataclass_types=DATACLASSES, **kwargs):
        super().__init__(dataclass_types, **kwargs)

    def parse_recipe(self, args: list[str] | None = None):
        """Parse ``--config x.yaml`` plus flags into the dataclasses (flags win over the YAML)."""
        args = list(sys.argv[1:] if args is None else args)
        if "--config" in args:
            k = args.index("--config")
            if k + 1 >= len(args):
                self.error("--config needs a YAML file")
            config_path = args[k + 1]
            del args[k : k + 2]
            self.apply_yaml(config_path)
        return self.parse_args_into_dataclasses(args=args, return_remaining_strings=False)

    def apply_yaml(self, path: str) -> None:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
        if not isinstance(config, dict):
            raise InvalidInputError(f"{path}: a recipe is a mapping of keys to values")
        for key, value in (config.pop("env", None) or {}).items():
            os.environ.setdefault(key, str(value))
        known = {f.name for cls in self.dataclass_types for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            names = [c.__name__ for c in self.dataclass_types]
            raise InvalidInputError(f"{path}: unknown keys {unknown}; every key must be a field of {names}")
        self.set_defaults(**config)
        # a YAML default satisfies a required flag
        for action in self._actions:
            if action.dest in config:
                action.required = False


def train_help_parser() -> RecipeParser:
    """``recpipe train --help``: every key a recipe (or a flag) may set, grouped by data, model and training."""
    groups = ("data arguments", "model and PEFT arguments", "training arguments (TrainingArguments + recpipe)")
    for cls, name in zip(DATACLASSES, groups):
        cls._argument_group_name = name  # HfArgumentParser puts each dataclass's flags under this heading
    try:
        parser = RecipeParser(
            prog="recpipe train",
            usage="recpipe train --config RECIPE.yaml [--flag value ...]",
            description="Train from a YAML recipe (recipes/*/config_*.yaml). Every key of a recipe is one of the "
            "flags below; flags given on the command line override the recipe's values. Both spellings work: "
            "--max_steps and --max-steps.",
        )
        parser.add_argument("--config", metavar="RECIPE.yaml", help="the recipe whose keys are the defaults")
        return parser
    finally:
        for cls in DATACLASSES:
            del cls._argument_group_name
