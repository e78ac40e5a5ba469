"""Train and evaluate a recpipe recommender on Amazon Reviews 2023 (or 2018) for one category.

Put the category's files in ``data/raw/amazon2023/`` (``<Category>.jsonl.gz`` and ``meta_<Category>.jsonl.gz``),
then:

    accelerate launch --config_file recpipe/accelerate_configs/cpu.yaml recipes/amazon.py \
        --config recipes/amazon/config_lora.yaml --category All_Beauty
    accelerate launch --config_file recpipe/accelerate_configs/ddp.yaml recipes/amazon.py \
        --config recipes/amazon/config_lora.yaml --category Video_Games
    python recipes/amazon.py --config recipes/amazon/config_lora.yaml --dataset amazon2018 \
        --data_dir data/raw/amazon2018 --category Video_Games --template amazon2018

When the files are missing, it says exactly which files to put where and exits with status 2 (under
``accelerate launch``, add ``-q`` so that the launcher adds no traceback of its own).
"""

from recpipe.console import run_recipe
from recpipe.errors import InvalidInputError
from recpipe.parser import RecipeParser
from recpipe.pipeline import run


def main(data_args, model_args, training_args):
    if not data_args.dataset.startswith("amazon"):
        raise InvalidInputError(f"recipes/amazon.py reads Amazon reviews; got dataset {data_args.dataset!r}")
    return run(data_args, model_args, training_args)


if __name__ == "__main__":
    run_recipe(main, RecipeParser())  # missing files: one line naming them, exit 2
