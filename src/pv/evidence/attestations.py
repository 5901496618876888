"""A gate report as evidence: two in-toto statements about the same inputs, in one DSSE bundle.

- ``https://in-toto.io/attestation/test-result/v0.1``: the ecosystem's test
  predicate (``result``, ``configuration``, ``passedTests``, ``warnedTests``,
  ``failedTests``), for policy engines that know nothing of pv;
- ``GATE_REPORT`` (``pv.attest.envelopes``): pv's whole gate report (``pv.schemas/gate-report.schema.json``),
  which ``pv gate`` decides from.

Both name the run's input files as their subjects, by sha256. Skipped tests are
listed as warned, never as passed; the result is ``PASSED`` only for a run that
executed tests and whose pytest exit status was 0.
"""

from __future__ import annotations

from typing import Any

from pv.attest.envelopes import GATE_REPORT, TEST_RESULT, envelope, file_subjects, statement
from pv.attest.keys import HostKey
from pv.evidence.records import ERROR, FAILED, PASSED, SKIPPED, XFAILED, XPASSED

def _tests(report: dict[str, Any], outcomes: tuple[str, ...]) -> list[str]:
    return sorted(test["nodeid"] for falsifier in report["falsifiers"] for test in falsifier["tests"]
                  if test["outcome"] in outcomes)


def test_result(report: dict[str, Any]) -> dict[str, Any]:
    """The test-result/v0.1 predicate of a gate report."""
    session = report["session"]
    failed = _tests(report, (FAILED, ERROR, XFAILED, XPASSED))
    warned = _tests(report, (SKIPPED,))
    ok = session["pytest_exitstatus"] == 0 and session["tests_executed"] > 0 and not failed
    configuration = [{"name": f"profile/{report['profile']['name']}",
                      "digest": {"sha256": report["profile"]["sha256"]}}]
    configuration += [{"name": c["path"], "digest": {"sha256": c["sha256"]}} for c in report["contracts"]]
    return {
        "result": ("WARNED" if warned else "PASSED") if ok else "FAILED",
        "configuration": configuration,
        "passedTests": _tests(report, (PASSED,)),
        "warnedTests": warned,
        "failedTests": failed,
    }


def report_envelopes(report: dict[str, Any], key: HostKey | None) -> list[dict[str, Any]]:
    """The DSSE envelopes of a gate report: its test-result statement, then pv's own."""
    subject = file_subjects(report["inputs"]["files"])
    return [envelope(statement(subject, TEST_RESULT, test_result(report)), key),
            envelope(statement(subject, GATE_REPORT, report), key)]
