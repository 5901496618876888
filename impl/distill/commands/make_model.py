"""Write a shape-faithful Qwen2 GGUF model with random weights.

The tokenizer metadata is copied from a real vocabulary file and padded to the
embedding rows with [PAD{i}] tokens, as llama.cpp's converters do. The file is
written tensor by tensor to a temporary name and renamed when complete; a
progress bar (tensors made, elapsed time) runs on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pv._util.errors import UserError
from pv._util.progress import Progress

PRESET_NAMES = ("tiny", "qwen2.5-coder-0.5b", "qwen2.5-coder-7b")
QUANT_NAMES = ("f32", "bf16", "q4_k", "q4_k_m")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=PRESET_NAMES, help="model shape")
    parser.add_argument("--quant", required=True, choices=QUANT_NAMES,
                        help="storage: f32, bf16 (matrices), q4_k (every matrix), q4_k_m (llama.cpp's Q4_K_M mix)")
    parser.add_argument("--vocab", required=True, type=Path, metavar="VOCAB.gguf",
                        help="GGUF file whose tokenizer metadata the model gets")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--vocab-rows", type=int, default=None, metavar="N",
                        help="embedding rows (default: the vocabulary's token count); extra rows are [PAD{i}] tokens")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.gguf", help="file to write")


def run(args: argparse.Namespace) -> int:
    from distill.errors import DistillError
    from distill.synth import make_model_file

    if not args.vocab.is_file():
        raise UserError(f"--vocab {args.vocab}: {'is a folder, expected a GGUF file' if args.vocab.is_dir() else 'no such file'}")
    if args.vocab_rows is not None and args.vocab_rows < 1:
        raise UserError(f"--vocab-rows {args.vocab_rows}: must be a positive integer")
    if not args.output.parent.is_dir():
        raise UserError(f"-o {args.output}: the folder {args.output.parent} does not exist")
    if args.output.is_dir():
        raise UserError(f"-o {args.output}: is a folder, expected a file name")
    try:
        with Progress("pv make-model: tensors") as progress:
            path = make_model_file(args.output, args.preset, args.quant, args.vocab, args.seed, args.vocab_rows,
                                   on_tensor=progress.update)
    except DistillError as err:
        raise UserError(str(err)) from None
    size = path.stat().st_size
    print(f"wrote {path} ({args.preset}, {args.quant}, {size / 2**20:.1f} MiB)")
    return 0
