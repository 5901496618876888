"""The offline wheelhouse builder: dependency closure, one version per package, atomic output (no network)."""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "wheelhouse.py"
_SPEC = importlib.util.spec_from_file_location("wheelhouse_script", _PATH)
wheelhouse = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = wheelhouse
_SPEC.loader.exec_module(wheelhouse)

#: A fake index: name -> version -> Requires-Dist lines.
INDEX = {
    "app": {"1.0": ["lib>=2", "helper", 'legacy; python_version < "3.8"', 'devtool; extra == "dev"',
                    "torch>=2", "nvidia-cublas"]},
    "other": {"1.0": []},
    "lib": {"1.0": [], "2.0": [], "3.0": ["only-in-lib3"]},
    "helper": {"0.5": ["lib<3", 'winonly; sys_platform == "win32"', 'new; python_version >= "3.12"']},
    "only-in-lib3": {"1.0": []},
    "new": {"1.0": []},
}


def fake_download(calls: list[str]):
    def download(requirement: str, target, folder: Path) -> Path:
        calls.append(requirement)
        req = Requirement(requirement)
        versions = [v for v in INDEX.get(req.name, {}) if req.specifier.contains(v)]
        if not versions:
            raise wheelhouse.WheelhouseError(f"no wheel of {requirement}")
        version = max(versions, key=Version)
        path = folder / f"{req.name.replace('-', '_')}-{version}-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            lines = "".join(f"Requires-Dist: {line}\n" for line in INDEX[req.name][version])
            archive.writestr(f"{req.name.replace('-', '_')}-{version}.dist-info/METADATA",
                             f"Metadata-Version: 2.1\nName: {req.name}\nVersion: {version}\n{lines}")
        return path

    return download


def build(tmp_path: Path, requested: list[str], calls: list[str] | None = None, **kwargs):
    return wheelhouse.build([Requirement(r) for r in requested], tmp_path / "house", wheelhouse.Target("3.12"),
                            wheelhouse.DEFAULT_SKIP, download=fake_download([] if calls is None else calls), **kwargs)


def test_closure_follows_markers_for_the_target_and_skips_what_the_host_provides(tmp_path: Path) -> None:
    house = build(tmp_path, ["app", "other"])
    assert sorted(house.wheels) == ["app", "helper", "lib", "new", "other"]
    assert sorted(p.name for p in (tmp_path / "house").glob("*.whl")) == sorted(p.name for p in house.wheels.values())
    assert house.required_by["lib"] == {"app", "helper"} and house.required_by["app"] == {"(requested)"}
    assert (tmp_path / "house" / "requirements.txt").read_text() == "app\nother\n"


def test_combined_specifiers_keep_one_version_and_drop_what_only_the_replaced_one_needed(tmp_path: Path) -> None:
    calls: list[str] = []
    house = build(tmp_path, ["app"], calls)
    assert house.version("lib") == Version("2.0")  # lib>=2 from app, lib<3 from helper (known one round later)
    assert "only-in-lib3" not in house.wheels
    names = [p.name for p in (tmp_path / "house").glob("lib-*.whl")]
    assert names == ["lib-2.0-py3-none-any.whl"]
    lib_calls = [Requirement(c) for c in calls if Requirement(c).name == "lib"]
    assert [r.specifier for r in lib_calls] == [SpecifierSet(">=2"), SpecifierSet(">=2,<3")]


def test_a_failed_download_leaves_no_output(tmp_path: Path) -> None:
    with pytest.raises(wheelhouse.WheelhouseError, match="missing-package"):
        build(tmp_path, ["app", "missing-package"])
    assert not (tmp_path / "house").exists()
    assert not list(tmp_path.iterdir())  # the scratch folder is gone too


def test_an_existing_wheelhouse_is_replaced_only_when_asked(tmp_path: Path) -> None:
    build(tmp_path, ["lib<2"])
    with pytest.raises(wheelhouse.WheelhouseError, match="--replace"):
        build(tmp_path, ["lib"])
    build(tmp_path, ["lib"], replace=True)
    assert sorted(p.name for p in (tmp_path / "house").glob("*.whl")) == ["lib-3.0-py3-none-any.whl",
                                                                          "only_in_lib3-1.0-py3-none-any.whl"]


def test_target_platforms_and_markers() -> None:
    target = wheelhouse.Target("3.12", glibc="2.28")
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    assert not any("2_29" in p for p in platforms)
    assert wheelhouse.applies(Requirement('x; python_version >= "3.12"'), target)
    assert not wheelhouse.applies(Requirement('x; python_version >= "3.12"'), wheelhouse.Target("3.11"))
    assert not wheelhouse.applies(Requirement('x; extra == "dev"'), target)
    assert wheelhouse.skipped("nvidia-cudnn-cu12", ["nvidia-*"]) and not wheelhouse.skipped("numpy2", ["numpy"])


def test_project_requirements_come_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["gguf>=0.17", "torch>=2.4"]\n')
    assert [str(r) for r in wheelhouse.project_requirements(pyproject)] == ["gguf>=0.17", "torch>=2.4"]
    pyproject.write_text('[project]\nname = "x"\n')
    with pytest.raises(wheelhouse.WheelhouseError, match="dependencies"):
        wheelhouse.project_requirements(pyproject)


def test_an_output_path_that_cannot_be_a_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    calls: list[str] = []
    for out in (tmp_path / "file", tmp_path / "file" / "house"):
        with pytest.raises(wheelhouse.WheelhouseError, match=str(out)):
            wheelhouse.build([Requirement("app")], out, wheelhouse.Target("3.12"), wheelhouse.DEFAULT_SKIP,
                             download=fake_download(calls))
    assert calls == []
