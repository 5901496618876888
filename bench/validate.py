"""Whole-process time of `pv validate`: start-up, and milliseconds per contract beyond it.

Each figure is the median wall time of several runs of the installed `pv`
command in a fresh process (what a user or a CI job pays), over:

- ``python -c pass`` (the interpreter's own start-up: the baseline);
- one tiny contract (the start-up of `pv validate`);
- generated corpora of 100, 1000 and 5000 contracts (valid ones, shaped like
  a typical contract of the dialect, about 4 KB each) in a temporary folder;
- the upstream corpus (``../shared/upstream-contracts`` or ``$PV_SHARED_DIR``).

"per contract" = (time - start-up time) / number of files, in wall time and
in CPU time (user + system: this machine is shared, and CPU time depends much
less on the other processes). Targets: start-up
under 150 ms, under 1 ms per contract beyond start-up. It also checks, with
``python -X importtime``, that the start-up imports neither torch nor
jsonschema. The result is printed as a table and written as JSON
(default ``reports/bench/validate.json``).

    python bench/validate.py [--sizes 100,1000,5000] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "bench" / "validate.json"
STARTUP_TARGET_MS = 150.0
PER_CONTRACT_TARGET_MS = 1.0
HEAVY_MODULES = ("torch", "jsonschema", "numpy", "hypothesis")


def pv_command() -> list[str]:
    """The installed `pv` script next to this interpreter (no shell shims), else ``python -m pv``."""
    script = Path(sys.executable).parent / "pv"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pv"]


def contract_text(index: int, families: int) -> str:
    """A valid contract of the dialect, ``c{index}-v1``, depending on the previous one."""
    fam = f"G{index}"
    depends = f"\n  depends_on:\n  - c{index - 1}-v1" if index % families else ""
    equations = "".join(
        f"""  eq{e}:
    formula: "y_i = x_i * w_{e} + b_{e} for i in 0..n"
    domain: "x in R^n, w in R, b in R, n >= 1"
    codomain: "y in R^n"
    invariants:
    - "len(y) == len(x)"
    - "y is finite when x, w and b are finite"
""" for e in range(3))
    obligations = "".join(
        f"""- id: {fam}-INV-00{o}
  type: {("invariant", "bound", "equivalence", "monotonicity", "conservation")[o - 1]}
  property: "property {o} of the generated kernel holds for every input"
  formal: "for all x in R^n: |f(x)_i - g(x)_i| <= eps"
  tolerance: 1.0e-6
  applies_to: all
""" for o in range(1, 6))
    falsifiers = "".join(
        f"""- id: FT-{fam}-00{t}
  rule: "generated rule {t}"
  prediction: "f(x) matches the reference within 1e-6 for random x in [-100, 100]^n"
  test: "tests/test_generated.py::test_{t}"
  if_fails: "the kernel drifted from the reference"
""" for t in range(1, 6))
    harnesses = "".join(
        f"""- id: KANI-{fam}-00{k}
  obligation: {fam}-INV-00{k}
  property: "bounded check of obligation {k}"
  bound: 8
  strategy: stub_float
  solver: cadical
  harness: verify_generated_{k}
""" for k in range(1, 4))
    requirements = "".join(f"  - falsifier: FT-{fam}-00{t}\n    profiles: [cpu]\n" for t in range(1, 6))
    return f"""metadata:
  version: 1.0.0
  created: "2026-01-01"
  author: bench
  description: "Generated contract {index} for the validation benchmark"
  references:
  - "A reference to a paper"{depends}
equations:
{equations}proof_obligations:
{obligations}falsification_tests:
{falsifiers}kani_harnesses:
{harnesses}qa_gate:
  id: F-{fam}-001
  name: "Generated gate {index}"
  description: "All generated obligations hold"
  checks:
  - validation
  - falsification
  pass_criteria: "every falsifier passes"
  require:
{requirements}"""


def write_corpus(folder: Path, count: int, families: int = 50) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"c{index}-v1.yaml").write_text(contract_text(index, families), encoding="utf-8")


def timed(command: list[str], repeats: int, expect: int = 0) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of ``command``, in ms, after one warm-up run.

    CPU time is reported as well because this machine is shared: wall time
    grows with the load of other processes, CPU time much less.
    """
    walls, cpus = [], []
    for run in range(repeats + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = (time.perf_counter() - start) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != expect:
            raise SystemExit(f"bench: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()[:500]}")
        if run:
            walls.append(wall)
            cpus.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def heavy_imports(target: Path) -> list[str]:
    """Heavy modules that `pv validate` imports on ``target`` (from ``python -X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pv", "validate", str(target)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    names = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    return sorted(names & set(HEAVY_MODULES))


def upstream_dir() -> Path:
    return Path(os.environ.get("PV_SHARED_DIR", REPO.parent / "shared")) / "upstream-contracts"


def _row(name: str, files: int, kb: float, total: tuple[float, float], startup: tuple[float, float]) -> dict:
    return {"corpus": name, "files": files, "kb_per_file": round(kb, 2),
            "wall_ms": round(total[0], 1), "cpu_ms": round(total[1], 1),
            "wall_ms_per_contract": round((total[0] - startup[0]) / files, 3),
            "cpu_ms_per_contract": round((total[1] - startup[1]) / files, 3)}


def measure(sizes: list[int], repeats: int) -> dict:
    pv = pv_command()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tiny = root / "tiny" / "c0-v1.yaml"
        tiny.parent.mkdir()
        tiny.write_text(contract_text(0, 1), encoding="utf-8")
        baseline = timed([sys.executable, "-c", "pass"], repeats)
        startup = timed([*pv, "validate", str(tiny)], repeats)
        imported = heavy_imports(tiny)
        for size in sizes:
            folder = root / f"corpus-{size}"
            write_corpus(folder, size)
            kb = sum(p.stat().st_size for p in folder.iterdir()) / size / 1024
            total = timed([*pv, "validate", str(folder)], max(3, repeats // 2) if size >= 1000 else repeats)
            rows.append(_row(f"generated {size}", size, kb, total, startup))
            shutil.rmtree(folder)
    upstream = upstream_dir()
    if upstream.is_dir():
        files = sorted(upstream.rglob("*.yaml"))
        kb = sum(p.stat().st_size for p in files) / len(files) / 1024
        total = timed([*pv, "validate", str(upstream)], repeats, expect=1)  # the corpus has real defects
        rows.append(_row("upstream", len(files), kb, total, startup))
    generated = [r for r in rows if r["corpus"].startswith("generated")]
    return {
        "benchmark": "pv validate, whole process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "repeats": repeats,
        "python_startup": {"wall_ms": round(baseline[0], 1), "cpu_ms": round(baseline[1], 1)},
        "pv_validate_startup": {"wall_ms": round(startup[0], 1), "cpu_ms": round(startup[1], 1)},
        "heavy_modules_imported": imported,
        "corpora": rows,
        "targets": {
            "startup_ms": STARTUP_TARGET_MS,
            "startup_met": {"wall": startup[0] < STARTUP_TARGET_MS and not imported,
                            "cpu": startup[1] < STARTUP_TARGET_MS and not imported},
            "ms_per_contract": PER_CONTRACT_TARGET_MS,
            "ms_per_contract_met": {
                "wall": bool(generated) and max(r["wall_ms_per_contract"] for r in generated) < PER_CONTRACT_TARGET_MS,
                "cpu": bool(generated) and max(r["cpu_ms_per_contract"] for r in generated) < PER_CONTRACT_TARGET_MS,
            },
        },
    }


def table(result: dict) -> str:
    base, start = result["python_startup"], result["pv_validate_startup"]
    lines = [
        f"{'':26} {'wall ms':>9} {'cpu ms':>9}",
        f"{'python -c pass':26} {base['wall_ms']:>9.1f} {base['cpu_ms']:>9.1f}",
        f"{'pv validate (one file)':26} {start['wall_ms']:>9.1f} {start['cpu_ms']:>9.1f}   target < {STARTUP_TARGET_MS:.0f} ms; "
        f"heavy imports: {', '.join(result['heavy_modules_imported']) or 'none'}",
        "",
        f"{'corpus':<16} {'files':>6} {'KB/file':>8} {'wall ms':>9} {'cpu ms':>9} {'wall ms/contract':>17} {'cpu ms/contract':>16}",
    ]
    lines += [f"{r['corpus']:<16} {r['files']:>6} {r['kb_per_file']:>8.2f} {r['wall_ms']:>9.1f} {r['cpu_ms']:>9.1f} "
              f"{r['wall_ms_per_contract']:>17.3f} {r['cpu_ms_per_contract']:>16.3f}" for r in result["corpora"]]
    targets = result["targets"]
    lines += ["", f"targets met (wall / cpu): start-up {targets['startup_met']['wall']} / {targets['startup_met']['cpu']}; "
                  f"per contract {targets['ms_per_contract_met']['wall']} / {targets['ms_per_contract_met']['cpu']}; "
                  f"load average {result['machine']['load_average_at_end']} on {result['machine']['cpus']} CPUs"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="generated corpus sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median; default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON result (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: expected whole numbers, got {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.repeats < 1:
        parser.error("--sizes and --repeats must be at least 1")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {args.out}: cannot create its folder ({err.strerror or err})")
    result = measure(sizes, args.repeats)
    print(table(result))
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    temporary.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
