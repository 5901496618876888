"""pv's pytest properties reach JUnit XML as JSON, not as Python reprs, and the gate report still
reads them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from gate_testing import read_report, write_project

pytest_plugins = ["pytester"]


def test_evidence_and_falsifier_ids_are_json_in_junit(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, {}, {"test_measure.py": '''

@pytest.mark.falsifies("FT-J-001")
def test_measures(evidence):
    evidence("peak_memory", 1.5, "GiB")
'''})
    junit, report = pytester.path / "junit.xml", pytester.path / "out" / "report.json"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={junit}", f"--pv-gate-report={report}",
                                f"--pv-profile={pytester.path / 'profiles' / 'cpu.yaml'}", "test_measure.py")
    result.assert_outcomes(passed=1)
    properties = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert json.loads(properties["pv_falsifies"]) == ["FT-J-001"]
    assert json.loads(properties["pv_evidence"]) == {"key": "peak_memory", "unit": "GiB", "value": 1.5}
    (falsifier,) = read_report(report)["falsifiers"]
    assert falsifier["tests"][0]["evidence"] == [{"key": "peak_memory", "value": 1.5, "unit": "GiB"}]
