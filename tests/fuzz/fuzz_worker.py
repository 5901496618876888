"""Runs a batch of hostile cases in one process (started by fuzz_bounded under resource limits)
and writes one result per case: how it ended, how long it took, the peak memory so far.

Case kinds:
- ``cli``: ``pv`` with ``argv`` (in-process, through the command table); ``rc`` is its exit code.
- ``expr``: compile ``text`` in the expression language and evaluate it on ``env`` (lists,
  ``t`` a tensor if ``tensors``); ``ended`` is ``value``, ``refused`` (not in the language) or
  the exception's type name.
- ``call``: ``module:function`` on ``args``; ``ended`` is ``value`` or the exception's type name.

A traceback is recorded where a ``cli`` case raised instead of returning an exit code.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import resource
import sys
import time
import traceback
from typing import Any


def _peak_kb() -> int:
    """This program's own peak resident memory. Linux's ``ru_maxrss`` also counts the forked image before
    exec (the whole pytest worker that started the batch), so it is read as ``VmHWM`` where there is one."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cli(case: dict) -> dict:
    from pv.cli import main

    out, err = io.StringIO(), io.StringIO()
    result: dict[str, Any] = {}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result["rc"] = main(case["argv"])
        except SystemExit as exit_:
            result["rc"] = exit_.code if isinstance(exit_.code, int) else 2
        except BaseException:  # noqa: BLE001 - the finding is that it escaped
            result["rc"] = None
            result["traceback"] = traceback.format_exc()[-3000:]
    result["stdout"] = out.getvalue()[-1_000_000:]
    result["stderr"] = err.getvalue()[-2000:]
    return result


def _env(case: dict) -> dict[str, Any]:
    env: dict[str, Any] = {"x": [1, 2, 3], "n": 3, "s": "abc", "big": 10**300}
    if case.get("tensors"):
        import torch

        env["t"] = torch.ones(64, 64)
        env["v"] = torch.arange(256, dtype=torch.float32)
    return env


def _expr(case: dict) -> dict:
    from pv.contracts import expr

    env = _env(case)
    try:
        compiled = expr.compile_expression(case["text"], names=list(env))
    except expr.ExpressionError:
        return {"ended": "refused"}
    try:
        value = compiled(env)
        bool(value) if not hasattr(value, "shape") else None
    except BaseException as err:  # noqa: BLE001 - recorded and judged by the test
        return {"ended": type(err).__name__, "message": str(err)[:300]}
    return {"ended": "value"}


def _call(case: dict) -> dict:
    module_name, _, name = case["function"].partition(":")
    function = getattr(importlib.import_module(module_name), name)
    try:
        function(*case.get("args", []))
    except BaseException as err:  # noqa: BLE001 - recorded and judged by the test
        return {"ended": type(err).__name__, "message": str(err)[:300],
                "traceback": None if isinstance(err, Exception) else traceback.format_exc()[-3000:]}
    return {"ended": "value"}


KINDS = {"cli": _cli, "expr": _expr, "call": _call}


def main(cases_path: str, results_path: str) -> None:
    with open(cases_path, encoding="utf-8") as handle:
        cases = json.load(handle)
    if any(case.get("tensors") for case in cases):
        import torch  # imported before the clock of the first case starts

        torch.set_num_threads(1)
    for module in sorted({case["function"].partition(":")[0] for case in cases if case["kind"] == "call"}):
        importlib.import_module(module)  # imports are not what the cases measure
    with open(results_path, "w", encoding="utf-8") as out:
        for index, case in enumerate(cases):
            started = time.monotonic()
            result = KINDS[case["kind"]](case)
            result.update(index=index, seconds=round(time.monotonic() - started, 4), peak_kb=_peak_kb())
            out.write(json.dumps(result) + "\n")
            out.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
