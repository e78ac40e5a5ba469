"""Pointwise preference ("will this user like this item?") on MovieLens or Amazon Reviews under the TALLRec
protocol, with an encoder cross-encoder or a causal LM with a yes/no verbalizer.

    accelerate launch --config_file recpipe/accelerate_configs/cpu.yaml recipes/ctr.py \
        --config recipes/ctr/config_encoder.yaml
    python recipes/ctr.py --config recipes/ctr/config_encoder_amazon.yaml --category All_Beauty
    python recipes/ctr.py --config recipes/ctr/config_encoder.yaml --train_shots 64 --shot_seed 1
    python recipes/ctr.py --config recipes/ctr/config_causal_lm.yaml --train_shots 256
"""

from recpipe.console import run_recipe
from recpipe.ctr.pipeline import run_ctr
from recpipe.parser import CTR_DATACLASSES, RecipeParser


def main(data_args, model_args, training_args):
    return run_ctr(data_args, model_args, training_args)


if __name__ == "__main__":
    run_recipe(main, RecipeParser(CTR_DATACLASSES))
