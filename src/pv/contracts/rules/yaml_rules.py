"""Rules on the YAML text itself (the loader records what they report)."""

from __future__ import annotations

from collections.abc import Iterable

from pv.contracts.findings import Location, Severity
from pv.contracts.loading import DUPLICATE_KEY
from pv.contracts.rules.registry import rule


@rule(DUPLICATE_KEY, Severity.ERROR, "mapping key repeated; the earlier value is lost")
def duplicate_keys(doc) -> Iterable[tuple[Location, str]]:
    for location, key in doc.duplicate_keys:
        yield location, f"duplicate key `{key}`: the earlier value is silently lost"
