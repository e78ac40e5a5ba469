"""The pointwise preference task ("will this user like this item?", TALLRec protocol), laid out like the top-level
retrieval task: :mod:`.config` (arguments and the saved model config), :mod:`.features` (like-rate features),
:mod:`.collators`, :mod:`.modeling` (cross-encoder and causal-LM models), :mod:`.trainer`, :mod:`.pipeline` (the run)
and :mod:`.baselines`. The examples themselves are built by :mod:`recpipe.data.ctr`."""
