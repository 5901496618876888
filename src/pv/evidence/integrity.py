"""The checksum of a gate report: a sha256 over its canonical JSON, against accidental edits.

The checksum makes an accidental edit or a corrupted copy (a flipped status, a
truncated file) detectable: ``pv gate`` recomputes it and refuses a report
whose content no longer matches. It is not a proof of origin: anyone can
recompute it after a deliberate edit. Origin is what the signature shows
(``pv.attest.envelopes``) over a DSSE envelope of the report.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pv._util.strict_json import canonical_json

ALGORITHM = "sha256"
#: top-level fields that are not content: the checksum and the signature over the content
SEAL_FIELDS = ("checksum", "signature")
CANONICAL_FORM = "json: sorted keys, no spaces, UTF-8, fields 'checksum' and 'signature' left out"


def signed_content(report: dict[str, Any]) -> bytes:
    """The canonical bytes of ``report`` without its checksum and signature."""
    return canonical_json({key: value for key, value in report.items() if key not in SEAL_FIELDS})


def content_digest(report: dict[str, Any]) -> str:
    """The sha256 of :func:`signed_content`."""
    return hashlib.sha256(signed_content(report)).hexdigest()


def add_checksum(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` with its ``checksum`` field set to the digest of the content."""
    checked = {key: value for key, value in report.items() if key != "checksum"}
    checked["checksum"] = {
        "algorithm": ALGORITHM,
        "canonical_form": CANONICAL_FORM,
        "digest": content_digest(checked),
    }
    return checked


def checksum_matches(report: dict[str, Any]) -> bool:
    """Whether ``report``'s recorded digest equals the digest of its content."""
    checksum = report.get("checksum")
    if not isinstance(checksum, dict) or checksum.get("algorithm") != ALGORITHM:
        return False
    return checksum.get("digest") == content_digest(report)
