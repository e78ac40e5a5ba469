"""Train and evaluate a recpipe recommender on MovieLens (the embedded default data).

    make train
    accelerate launch --config_file recpipe/accelerate_configs/cpu.yaml recipes/movielens.py \
        --config recipes/movielens/config_lora.yaml
    python recipes/movielens.py --config recipes/movielens/config_lora.yaml --max_steps 50 --mlm_weight 0
"""

from recpipe.console import run_recipe
from recpipe.parser import RecipeParser
from recpipe.pipeline import run


def main(data_args, model_args, training_args):
    return run(data_args, model_args, training_args)


if __name__ == "__main__":
    run_recipe(main, RecipeParser())
