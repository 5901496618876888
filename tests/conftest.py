"""Fixtures shared by the tests of pv and distill: where the real test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_data import shared_dir


@pytest.fixture(autouse=True)
def _no_host_signing_key(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Reports written by tests are unsigned unless a test gives a key (never the developer's own)."""
    monkeypatch.setenv("PV_KEY_DIR", str(tmp_path_factory.mktemp("no-signing-key")))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "vocab").is_dir():
        pytest.fail(f"real test data not found at {path} (set PV_SHARED_DIR)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def vocab_dir(shared: Path) -> Path:
    return shared / "vocab"


@pytest.fixture(scope="session")
def upstream_contracts(shared: Path) -> Path:
    return shared / "upstream-contracts"
