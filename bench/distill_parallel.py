"""Seconds per step of `pv distill` runs: one rank, two ranks, bf16 autocast, and the cost of checkpoints.

Every configuration is a real run of ``distill.train.run_distillation`` on the
same teacher/student pair (the tiny preset pair, or ``--teacher``/``--student``
files), in the same invocation, and is reported as a ratio to the baseline:
one rank of batch ``2b`` without checkpoints.

- ``2 ranks x b``: two gloo ranks forked from this process (CPU only: one
  GPU cannot hold two ranks), the same rows per step as the baseline;
- ``amp bf16``: the baseline with the student's forward under bf16 autocast;
- ``checkpoint every S``: the baseline writing a checkpoint every ``S`` steps;
  the cost of one checkpoint (the ``checkpoint`` records of the log) and its
  share per step.

A step's time is the rank-0 time from reading the batch to the end of the
optimizer step (its median after the first step). Writes
``distill_parallel-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hardware, report  # noqa: E402


def _records(out: Path, kind: str) -> list[dict[str, Any]]:
    lines = (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("record") == kind]


def _figures(out: Path) -> dict[str, Any]:
    times = [r["step_time_s"] for r in _records(out, "step")]
    rest = times[1:] or times
    checkpoints = _records(out, "checkpoint")
    figures: dict[str, Any] = {"steps": len(times), "first_s": times[0], "median_s": statistics.median(rest),
                               "mean_s": statistics.fmean(rest)}
    if checkpoints:
        seconds = [c["seconds"] for c in checkpoints]
        figures.update(checkpoints=len(checkpoints), checkpoint_median_s=statistics.median(seconds),
                       checkpoint_bytes=checkpoints[-1]["bytes"])
    return figures


def _run(args: argparse.Namespace, folder: Path, name: str, ranks: int, batch: int, **options: Any) -> dict[str, Any]:
    from distill.parallel import fork_ranks
    from distill.train import DistillConfig, run_distillation

    out = folder / name
    config = DistillConfig(out_dir=out, teacher=args.teacher, student=args.student, steps=args.steps, batch=batch,
                           seq=args.seq, device=str(args.device_obj), **options)
    if ranks == 1:
        run_distillation(config, echo=lambda line: None)
    else:
        def rank() -> int:
            return 0 if run_distillation(config, echo=lambda line: None).status == "completed" else 1

        codes = fork_ranks(ranks, rank, folder / f"{name}-logs")
        if codes != [0] * ranks:
            raise report.BenchFailed(f"{name}: rank exit codes {codes}; see {folder / f'{name}-logs'}")
    return {"name": name, "ranks": ranks, "batch_per_rank": batch, **options, **_figures(out)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = hardware.resolve_device(args.device)
    args.device_obj = device
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.teacher is None:
            from distill.train import build_preset_pair

            args.teacher, args.student = build_preset_pair("tiny", folder / "pair", 0)
        runs = [_run(args, folder, "1 rank x 2b", 1, 2 * args.batch)]
        if device.type == "cpu":
            runs.append(_run(args, folder, "2 ranks x b", 2, args.batch))
        runs.append(_run(args, folder, "amp bf16", 1, 2 * args.batch, amp="bf16"))
        runs.append(_run(args, folder, f"checkpoint every {args.checkpoint_every}", 1, 2 * args.batch,
                         checkpoint_every=args.checkpoint_every))
    base = runs[0]["median_s"]
    for run in runs:
        run["ratio_to_baseline"] = report.ratio(run["median_s"], base)
        if "checkpoint_median_s" in run:
            run["checkpoint_share_per_step"] = report.ratio(run["checkpoint_median_s"] / args.checkpoint_every, base)
    info = hardware.device_info(device)
    payload = {"benchmark": "distill_parallel", "device": info, "threads_per_rank": args.threads,
               "teacher": str(args.teacher), "student": str(args.student), "steps": args.steps, "seq": args.seq,
               "runs": runs}
    print(f"device: {info['name']}  date: {info['date']}  threads per rank: {args.threads}")
    rows = [[r["name"], f"{r['median_s']:.4f}", f"{r['ratio_to_baseline']:.2f}",
             "-" if "checkpoint_median_s" not in r else
             f"{r['checkpoint_median_s']:.4f} s, {r['checkpoint_bytes'] / 2**20:.1f} MiB"] for r in runs]
    print(report.format_table(["run", "median s/step", "x baseline", "one checkpoint"], rows))
    path = report.write_json(args.out, f"distill_parallel-{hardware.device_tag(info)}", payload)
    print(f"wrote {path}")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_common_arguments(parser)
    parser.add_argument("--teacher", type=Path, help="teacher GGUF (default: the tiny preset pair)")
    parser.add_argument("--student", type=Path, help="student GGUF (with --teacher)")
    parser.add_argument("--steps", type=report.positive_int, default=30, help="steps per run (default 30)")
    parser.add_argument("--batch", type=report.positive_int, default=2, help="b: batch per rank of the 2-rank run")
    parser.add_argument("--seq", type=report.positive_int, default=32, help="tokens per sequence (default 32)")
    parser.add_argument("--checkpoint-every", type=report.positive_int, default=10,
                        help="S of the checkpointing run (default 10; 50 on a GPU)")
    parser.add_argument("--threads", type=report.positive_int, default=1, help="torch threads per rank (default 1)")
    args = parser.parse_args(argv)
    if (args.teacher is None) != (args.student is None):
        parser.error("give both --teacher and --student, or neither")
    return report.run_main(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
