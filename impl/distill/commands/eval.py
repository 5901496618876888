"""Evaluate a student against its teacher on held-out data, with the student it started from as the baseline.

`pv eval RUN_DIR` evaluates the run's student.safetensors against the run's
teacher on the documents the run held out of training (--holdout or
--eval-every), with initial_student.gguf, the student the run started from, as
the baseline, at the run's temperature. `pv eval --teacher T.gguf --student S
--baseline B --data D` evaluates any pair: S and B are GGUF files or
safetensors files of the student's parameters with their config (a
config.json beside them, or --config S0.gguf); B defaults to the GGUF file the
config comes from.

Metrics, each with its count of positions: the KD loss at the temperature (the
training loss), the student's next-token cross-entropy and perplexity, and
teacher-student top-1 agreement, for the student and the baseline, and their
difference, over at most --max-rows held-out rows (default 256, spread evenly
over them: the first, and every n/N-th after it). The student passes only when its held-out KD loss is at least
--margin (default 0.05, a fraction) below the baseline's. It fails, naming
the reason, on a checkpoint that does not read (truncated), has NaN or Inf or
constant (all-zero) weights, shapes or a vocabulary other than the baseline's,
the baseline's exact weights (a no-op run), logits that are NaN or Inf at
some position, or held-out rows that equal rows of the training data (the
run's, or --train-data). There is no structural fallback.

Exit 0 pass, 1 fail (the reasons printed), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from pv._util.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="a pv distill run folder")
    parser.add_argument("--teacher", type=Path, metavar="T.gguf", help="the teacher (default: the run's)")
    parser.add_argument("--student", type=Path, metavar="S",
                        help="the student, GGUF or safetensors (default: the run's student.safetensors)")
    parser.add_argument("--baseline", type=Path, metavar="B",
                        help="the student's starting point (default: the run's initial_student.gguf, else --config)")
    parser.add_argument("--config", type=Path, metavar="S0.gguf|config.json",
                        help="config of a safetensors student (default: config.json beside it, else the baseline)")
    parser.add_argument("--data", type=Path, metavar="FILE",
                        help="held-out token ids, .npy or text (default: the run's held-out documents)")
    parser.add_argument("--train-data", type=Path, metavar="FILE",
                        help="the training data, to refuse held-out rows that overlap it (default: the run's)")
    parser.add_argument("--seq", type=int, help="tokens per row (default: the run's, else 32)")
    parser.add_argument("--temperature", type=float, help="KD temperature (default: the run's, else 1.0)")
    parser.add_argument("--margin", type=float, default=None,
                        help="least relative KD-loss reduction below the baseline that passes (default 0.05)")
    parser.add_argument("--batch", type=int, default=4, help="rows per forward (default 4)")
    parser.add_argument("--max-rows", type=int, default=None, metavar="N",
                        help="evaluate at most N held-out rows, spread evenly over them (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object of a run file (of the log: its header, the first line), read through distill.inputs."""
    from distill.errors import DistillError
    from distill.inputs import open_input
    from distill.run_folder import MAX_LOG_BYTES

    try:
        with open_input(path, "a run file", MAX_LOG_BYTES) as handle:
            text = handle.readline() if path.suffix == ".jsonl" else handle.read()
        data = json.loads(text.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DistillError(f"{path}: not readable: {err}") from None
    if not isinstance(data, dict):
        raise DistillError(f"{path}: expected a JSON object")
    return data


def _same_file(path: Path, fingerprint: str | None, what: str) -> None:
    """Refuse a run input that changed since the run (by its fingerprint in the run's identity)."""
    from distill.checkpoints import file_fingerprint
    from distill.errors import DistillError

    if fingerprint is not None and file_fingerprint(path, what) != fingerprint:
        raise DistillError(f"{path}: the run's {what} changed since the run (its fingerprint differs)")


def _run_corpus(path: Path, student: Path, vocab: int, seq: int, fingerprint: str | None) -> Any:
    """The run's data read again as the run read it (token ids, or text through the student's tokenizer),
    refused when its ids differ from the run's (by the fingerprint in the run's identity)."""
    from distill.data import read_corpus
    from distill.errors import DistillError
    from distill.qwen2_gguf import read_gguf
    from distill.train import data_fingerprint

    corpus = read_corpus(path, read_gguf(student).tokenizer, str(student), vocab, seq)
    if fingerprint is not None and data_fingerprint(Path(path), corpus) != fingerprint:
        raise DistillError(f"{path}: the run's data changed since the run (its fingerprint differs)")
    return corpus


def _run_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """Teacher, student, baseline, held-out and training rows, temperature of the run in ``args.run_dir``."""
    from distill.data import TokenStream, disjoint_training, read_token_file, windows
    from distill.errors import DistillError
    from distill.qwen2_gguf import read_gguf
    from distill.run_folder import CHECKPOINT_FILE, INITIAL_STUDENT, LOG_FILE, SUMMARY_FILE

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise DistillError(f"{run_dir}: not a run folder")
    summary, header = _read_json(run_dir / SUMMARY_FILE), _read_json(run_dir / LOG_FILE)
    config, identity = header.get("config") or {}, header.get("identity") or {}
    teacher = args.teacher or Path(header["teacher"])
    if args.teacher is None:
        _same_file(teacher, identity.get("teacher"), "teacher")
    baseline = args.baseline or run_dir / INITIAL_STUDENT
    if not baseline.is_file():
        raise DistillError(f"{run_dir} keeps no {INITIAL_STUDENT} (the student it started from); give --baseline")
    student = args.student or run_dir / CHECKPOINT_FILE
    if args.student is None and not student.is_file():
        raise DistillError(f"{run_dir} has no {CHECKPOINT_FILE}: the run did not complete "
                           f"(status {summary.get('status')!r})")
    seq = args.seq or int(config["seq"])
    initial = run_dir / INITIAL_STUDENT
    vocab = read_gguf(initial if initial.is_file() else baseline).config.vocab_size  # ids must be student rows
    held_out = summary.get("held_out")
    run_data = None if config.get("data") is None else Path(config["data"])
    train_ids = None
    run_ids = None
    if run_data is not None:
        run_seq = held_out["seq"] if held_out else seq
        run_ids = _run_corpus(run_data, initial if initial.is_file() else baseline, vocab, run_seq,
                              identity.get("data")).ids
        rows = windows(run_ids, run_seq)
        train_ids = rows[disjoint_training(rows, held_out["indices"] if held_out else [])].reshape(-1)
    if args.data is not None:
        eval_rows = windows(read_token_file(args.data, vocab, seq), seq)
    elif held_out is not None and run_ids is not None:
        eval_rows = windows(run_ids, held_out["seq"])[held_out["indices"]]
    else:
        raise DistillError(f"{run_dir} held out no data (start a run with --eval-every or --holdout); give --data "
                           "FILE of token ids the run never trained on")
    if args.train_data is not None:
        trained = windows(read_token_file(args.train_data, vocab, eval_rows.shape[1]), eval_rows.shape[1])
    elif train_ids is not None:
        trained = windows(train_ids, eval_rows.shape[1])
    else:  # random ids: the rows the run read, drawn again from its seed
        stream = TokenStream(None, vocab, eval_rows.shape[1], int(config["seed"]))
        trained = stream.take(int(summary.get("steps_completed") or 0) * int(identity.get("global_batch", 1)))
    return {"teacher": teacher, "student": student, "baseline": baseline, "rows": eval_rows,
            "trained_rows": trained if trained.numel() else None,
            "temperature": args.temperature or float(config.get("temperature", 1.0)),
            "data": str(args.data or run_data), "backend": config.get("backend")}


def _pair_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs of ``pv eval --teacher T --student S [--baseline B] --data D``."""
    from distill.data import read_token_file, windows
    from distill.qwen2_gguf import read_gguf

    if args.teacher is None or args.student is None or args.data is None:
        raise UserError("give a run folder, or --teacher, --student and --data")
    baseline = args.baseline or (args.config if args.config is not None and args.config.suffix == ".gguf" else None)
    if baseline is None:
        raise UserError("give --baseline B (the student's starting point): a student passes only by beating it")
    seq = args.seq or 32
    vocab = read_gguf(args.teacher).config.vocab_size
    rows = windows(read_token_file(args.data, vocab, seq), seq)
    trained = None if args.train_data is None else windows(read_token_file(args.train_data, vocab, seq), seq)
    return {"teacher": args.teacher, "student": args.student, "baseline": baseline, "rows": rows,
            "trained_rows": trained, "temperature": args.temperature or 1.0, "data": str(args.data),
            "backend": None}


def run(args: argparse.Namespace) -> int:
    import torch

    from distill.errors import DistillError
    from distill.evaluate import DEFAULT_MARGIN, DEFAULT_MAX_ROWS, evaluate_students, spread_rows

    margin = DEFAULT_MARGIN if args.margin is None else args.margin
    if args.seq is not None and args.seq < 2:
        raise UserError(f"--seq must be an integer >= 2 (a next token to predict), got {args.seq}")
    if args.batch < 1:
        raise UserError(f"--batch must be an integer >= 1, got {args.batch}")
    max_rows = DEFAULT_MAX_ROWS if args.max_rows is None else args.max_rows
    if max_rows < 1:
        raise UserError(f"--max-rows must be an integer >= 1, got {max_rows}")
    if not (math.isfinite(margin) and 0 <= margin < 1):
        raise UserError(f"--margin must be a fraction in [0, 1), got {margin}")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UserError(f"--temperature must be a finite number > 0, got {args.temperature}")
    try:
        inputs = _run_inputs(args) if args.run_dir is not None else _pair_inputs(args)
        held_out = inputs["rows"]
        report = evaluate_students(inputs["teacher"], inputs["student"], inputs["baseline"],
                                   spread_rows(held_out, max_rows),
                                   config_source=args.config, temperature=inputs["temperature"], margin=margin,
                                   trained_rows=inputs["trained_rows"], device=torch.device(args.device),
                                   backend=inputs["backend"], batch=args.batch)
    except DistillError as err:
        raise UserError(str(err)) from None
    except (KeyError, TypeError) as err:
        raise UserError(f"{args.run_dir}: not a run folder this version reads (missing {err})") from None
    result = {"teacher": str(inputs["teacher"]), "student": str(inputs["student"]),
              "baseline": str(inputs["baseline"]), "data": inputs["data"], "temperature": inputs["temperature"],
              "rows_held_out": held_out.shape[0], **report.to_json()}
    print(json.dumps(result, indent=2) if args.format == "json" else _text(result))
    return 0 if report.passed else 1


def _text(result: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"pv eval: {result['verdict'].upper()}: student {result['student']} against baseline "
             f"{result['baseline']}, teacher {result['teacher']}",
             f"held-out data: {result['rows']} of {result['rows_held_out']} rows, {result['positions_held_out']} "
             f"positions ({result['data']})"]
    student, baseline = result["metrics"]["student"], result["metrics"]["baseline"]
    if student is not None and baseline is not None:
        lines.append(f"{'':26}{'student':>12}{'baseline':>12}{'difference':>12}")
        for key, label in (("kd_loss", f"KD loss (T={result['temperature']:g})"), ("ce", "cross-entropy (nats)"),
                           ("perplexity", "perplexity"), ("top1_agreement", "top-1 agreement")):
            lines.append(f"{label:26}{student[key]:12.6g}{baseline[key]:12.6g}{student[key] - baseline[key]:12.6g}")
        lines.append(f"positions: {student['positions']} (cross-entropy {student['ce_positions']}); a pass needs "
                     f"a KD loss {result['margin']:g} below the baseline's; a uniform guess scores "
                     f"{student['uniform_kd_loss']:.6g}")
    lines += [f"reason: {reason}" for reason in result["reasons"]]
    return "\n".join(lines)
