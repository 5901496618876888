"""distill: a minimal but real knowledge-distillation stack, the system under test.

The modules read as the chain they implement: ``quant`` (Q4_K/Q6_K blocks) ->
``gguf_io`` (GGUF files) -> ``model`` (the Qwen2 transformer) -> ``synth``
(shape-faithful random models) -> ``teacher`` (frozen teacher backends) ->
``dispatch`` and ``vocab`` (backend selection, vocabulary alignment) -> ``kd``
(the KD loss) -> ``train`` (the distillation loop).
"""

__version__ = "0.1.0"
