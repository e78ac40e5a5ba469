"""Train and evaluate a recpipe recommender on Amazon Reviews 2023 (or 2018) for one category.

Put the category's files in ``data/raw/amazon2023/`` (``<Category>.jsonl.gz`` and ``meta_<Category>.jsonl.gz``),
then:

    accelerate launch --config_file recpipe/accelerate_configs/cpu.yaml recipes/amazon.py \
        --config recipes/amazon/config_lora.yaml --category All_Beauty
    accelerate launch --config_file recpipe/accelerate_configs/ddp.yaml recipes/amazon.py \
        --config recipes/amazon/config_lora.yaml --category Video_Games
    python recipes/amazon.py --config recipes/amazon/config_lora.yaml --dataset amazon2018 \
        --data_dir data/raw/amazon2018 --category Video_Games --template amazon2018

When the files are missing, it says exactly which files to put where.
"""

import logging
import sys

from recpipe.launch_config import end_process_group
from recpipe.parser import RecipeParser
from recpipe.pipeline import run


def main(data_args, model_args, training_args):
    if not data_args.dataset.startswith("amazon"):
        raise ValueError(f"recipes/amazon.py reads Amazon reviews; got dataset {data_args.dataset!r}")
    return run(data_args, model_args, training_args)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        main(*RecipeParser().parse_recipe())
        end_process_group()
    except FileNotFoundError as e:
        print(f"recipes/amazon.py: {e}", file=sys.stderr)
        end_process_group(wait=False)
        sys.exit(2)
