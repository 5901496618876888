"""distill: a minimal but real knowledge-distillation stack, the system under test.

The modules read as the chain they implement, each importing only earlier ones:
``quant`` (Q4_K/Q6_K blocks) -> ``gguf_file`` (the GGUF container) -> ``tokenizer``
(its token lists and byte-level BPE) -> ``model`` (the Qwen2 transformer) -> ``qwen2_gguf`` (Qwen2
checkpoints as GGUF files) -> ``synth`` (shape-faithful random models) -> ``vocab``
(vocabulary alignment) -> ``teacher`` (frozen teacher backends, truncating at their
boundary) -> ``dispatch`` (backend selection) -> ``kd`` (the KD loss) -> ``data`` (token files,
text packed into documents, and the resumable row stream) -> ``parallel`` (torch.distributed ranks, DDP, the
launcher) -> ``checkpoints`` (atomic checkpoint folders) -> ``curves`` (the run's
curves and summary) -> ``train`` (the distillation loop); ``commands`` are its `pv`
subcommands.
"""

__version__ = "0.1.0"
#: Only what a module lists in its own ``__pv_bindable__`` can be bound by a contract:
#: the readers and writers of files are not bindable.
__pv_bindable__: tuple[str, ...] = ()
