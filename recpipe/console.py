"""What a run prints, and how a recipe script ends: one log format for every entry point, the main process alone
at INFO (the others keep errors only, so nothing appears once per rank), model loads without the libraries'
warnings about weights recpipe initialises on purpose, one line of trainable-parameter counts, and a user error
that ends a recipe as one line and exit status 2."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager

from recpipe.errors import UserError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def process_rank() -> int:
    """This process's rank under ``accelerate launch`` / ``torchrun`` (0 when not launched)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def setup_logging() -> None:
    """INFO on the main process; errors only on the others (their warnings would repeat the main process's)."""
    main = process_rank() == 0
    logging.basicConfig(format=LOG_FORMAT)  # leaves handlers alone where there are some (an embedding program)
    logging.getLogger().setLevel(logging.INFO if main else logging.ERROR)
    if not main:
        import datasets
        import transformers

        transformers.utils.logging.set_verbosity_error()
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        warnings.simplefilter("ignore")


@contextmanager
def quiet_model_loading():
    """Silence the loading report, the progress bar and library deprecation warnings while a pretrained model loads.
    What recpipe expects to be missing it checks itself (``recpipe.backbone.check_loading_info``); anything else it
    reports, so nothing is hidden that matters."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def parameter_summary(model) -> str:
    """One line: trainable parameters of ``model`` out of all, split into adapters, encoder weights (an MLM head,
    or every weight under full fine-tuning) and recpipe's own towers and heads."""
    counts = {"adapters": 0, "encoder": 0, "towers and heads": 0}
    total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if not p.requires_grad:
            continue
        if any(key in name for key in ("lora_", "ia3_")):
            counts["adapters"] += p.numel()
        elif name.startswith(("encoder.", "lm.")):
            counts["encoder"] += p.numel()
        else:
            counts["towers and heads"] += p.numel()
    trainable = sum(counts.values())
    parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%): {parts}"


def run_recipe(main, parser) -> None:
    """A recipe script's ``__main__``: parse the recipe, run ``main``, end the process group; a ``UserError`` (a
    missing file, a bad key) ends the process as one line on stderr with exit status 2, no traceback."""
    from recpipe.launch_config import end_process_group

    setup_logging()
    script = os.path.basename(sys.argv[0])
    try:
        main(*parser.parse_recipe())
    except UserError as e:
        print(f"{script}: error: {e}", file=sys.stderr)
        end_process_group(wait=False)
        sys.exit(2)
    end_process_group()
