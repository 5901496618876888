"""The release verdict as evidence: a SLSA verification summary of the commit, listing what it consumed.

``pv gate --release --attest FILE`` writes one in-toto statement (predicate
``https://slsa.dev/verification_summary/v1``) about the released commit (subject
digest ``gitCommit``): the verifier (pv and its version), when, the policy (the
gated contracts, by the sha256 of their digests), every attestation the decision
read (by the sha256 of its file) and the result, PASSED or FAILED. It is signed
by this host's key when there is one, like every other piece of evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pv.attest.envelopes import VERIFICATION_SUMMARY, statement
from pv.evidence.contracts import ContractInfo


def _file_digest(path: Path) -> dict[str, str]:
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def summary_statement(commit: str, passed: bool, contracts: Sequence[ContractInfo],
                      consumed: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    """The verification summary of a release of ``commit``; ``consumed``: (shown name, file) of each attestation."""
    from pv import __version__

    policy = hashlib.sha256("".join(f"{c.path}\0{c.sha256}\n" for c in contracts).encode()).hexdigest()
    predicate = {
        "verifier": {"id": "https://pv-distill.invalid/pv-gate", "version": {"pv": __version__}},
        "timeVerified": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "resourceUri": f"git+commit:{commit}",
        "policy": {"uri": "pv gate --release over the contracts " + ", ".join(c.path for c in contracts),
                   "digest": {"sha256": policy}},
        "inputAttestations": [{"uri": shown, "digest": _file_digest(path)} for shown, path in consumed],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": [],
    }
    return statement([{"name": "commit", "digest": {"gitCommit": commit}}], VERIFICATION_SUMMARY, predicate)

