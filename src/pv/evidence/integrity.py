"""The integrity seal of a gate report: a sha256 over its canonical JSON.

The seal makes an edited report (a flipped status, a changed contract hash, a
removed test) detectable: ``pv gate`` recomputes the digest and refuses a
report whose content no longer matches it. It is a check against edits and
corruption, not a signature: whoever can run the writer can seal any content.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ALGORITHM = "sha256"
CANONICAL_FORM = "json: sorted keys, no spaces, UTF-8, field 'integrity' left out"


def canonical_json(data: Any) -> bytes:
    """``data`` as canonical JSON bytes: sorted keys, compact separators, UTF-8, no NaN."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def content_digest(report: dict[str, Any]) -> str:
    """The sha256 of ``report`` without its ``integrity`` field."""
    content = {key: value for key, value in report.items() if key != "integrity"}
    return hashlib.sha256(canonical_json(content)).hexdigest()


def seal(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` with its ``integrity`` field set to the digest of the rest."""
    sealed = {key: value for key, value in report.items() if key != "integrity"}
    sealed["integrity"] = {
        "algorithm": ALGORITHM,
        "canonical_form": CANONICAL_FORM,
        "digest": content_digest(sealed),
    }
    return sealed


def is_intact(report: dict[str, Any]) -> bool:
    """Whether ``report``'s recorded digest equals the digest of its content."""
    integrity = report.get("integrity")
    if not isinstance(integrity, dict) or integrity.get("algorithm") != ALGORITHM:
        return False
    return integrity.get("digest") == content_digest(report)
