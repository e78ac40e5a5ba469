"""recpipe: recommenders on top of pretrained language models, with the Hugging Face stack."""

__version__ = "0.1.0"
