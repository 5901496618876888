"""Evidence in the ecosystem's format: in-toto Statements v1 in DSSE envelopes, kept as JSON Lines bundles.

A statement names its ``subject`` (here: every input file of the run, by sha256),
a ``predicateType`` and a ``predicate``. It travels as the base64 payload of a
DSSE envelope (``payloadType: application/vnd.in-toto+json``) whose signatures
cover the PAE encoding of type and payload. Signing and verifying go through
``securesystemslib`` (``dsse.Envelope``, ``signer.CryptoSigner``), so any DSSE
verifier checks pv's evidence the same way. A bundle is a file of one envelope
per line (``*.intoto.jsonl``), the convention of in-toto and SLSA tools.

An envelope without signatures is valid DSSE: a host without a key writes one,
and ``pv gate --release`` refuses it.
"""

from __future__ import annotations

import binascii
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pv._util.enums import OrderedStrEnum
from pv._util.errors import UserError
from pv._util.files import write_atomic
from pv._util.strict_json import canonical_json, loads_strict, read_text_strict
from pv.attest.keys import HostKey, TrustedKeys

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: the in-toto predicate of one test-suite run
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
#: pv's own predicates: a gate report (``pv.schemas/gate-report.schema.json``) and a ``pv mutate`` report
GATE_REPORT = "https://pv-distill.invalid/attestation/gate-report/v3"
MUTATION_REPORT = "https://pv-distill.invalid/attestation/mutation-report/v1"
#: SLSA's verification summary: the predicate of a release verdict
VERIFICATION_SUMMARY = "https://slsa.dev/verification_summary/v1"
BUNDLE_SUFFIX = ".intoto.jsonl"
#: most envelopes one bundle may hold
MAX_ENVELOPES = 16


class EvidenceError(UserError):
    """An evidence file that cannot be read, is not a DSSE bundle of in-toto statements, or was edited."""


class SignatureStatus(OrderedStrEnum):
    """What could be verified of an envelope's signatures, worst first.

    ``invalid`` (a signature by a trusted key that does not match the payload: the
    evidence was edited) refuses it outright; ``unknown-key`` and ``unsigned`` are
    refused by a release and noted otherwise; ``trusted``: signed by a trusted key.
    """

    INVALID = "invalid"
    UNKNOWN_KEY = "unknown-key"
    UNSIGNED = "unsigned"
    TRUSTED = "trusted"


@dataclass(frozen=True)
class SignatureCheck:
    """What the gate found of one envelope's signatures."""

    status: SignatureStatus
    key_id: str | None
    detail: str


@dataclass(frozen=True)
class Attestation:
    """One statement read from a bundle, with what its envelope's signatures showed."""

    statement: dict[str, Any]
    signature: SignatureCheck

    @property
    def predicate_type(self) -> str:
        return self.statement["predicateType"]

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement["predicate"]


def file_subjects(digests: Mapping[str, str]) -> list[dict[str, Any]]:
    """In-toto resource descriptors of files: ``{"name": path, "digest": {"sha256": hex}}``, sorted by path."""
    return [{"name": path, "digest": {"sha256": digest}} for path, digest in sorted(digests.items())]


def statement(subject: Sequence[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1."""
    return {"_type": STATEMENT_TYPE, "subject": list(subject), "predicateType": predicate_type,
            "predicate": predicate}


def signer(key: HostKey) -> Any:
    """securesystemslib's signer of ``key``, its key id pv's (the sha256 of the raw public key)."""
    from securesystemslib.signer import CryptoSigner, SSlibKey

    public = SSlibKey.from_crypto(key.private.public_key(), keyid=key.key_id)
    return CryptoSigner(key.private, public)


def envelope(content: dict[str, Any], key: HostKey | None) -> dict[str, Any]:
    """``content`` (a statement) as a DSSE envelope, signed by ``key`` (None: no signature)."""
    from securesystemslib.dsse import Envelope

    wrapped = Envelope(canonical_json(content), PAYLOAD_TYPE, {})
    if key is not None:
        wrapped.sign(signer(key))
    return wrapped.to_dict()


def write_bundle(path: str | Path, envelopes: Sequence[dict[str, Any]],
                 inputs: Sequence[str | Path] = ()) -> Path:
    """Write ``envelopes`` as a JSON Lines bundle, whole or not at all (never over one of ``inputs``)."""
    return write_atomic(path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in envelopes), inputs=inputs)


def _check(envelope_data: Any, trusted: TrustedKeys, shown: str) -> tuple[bytes, SignatureCheck]:
    """The payload of one envelope and what its signatures show."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    if not isinstance(envelope_data, dict) or set(envelope_data) != {"payload", "payloadType", "signatures"}:
        raise EvidenceError(f"{shown}: not a DSSE envelope (keys payload, payloadType, signatures)")
    if envelope_data["payloadType"] != PAYLOAD_TYPE:
        raise EvidenceError(f"{shown}: payloadType {envelope_data['payloadType']!r}, not {PAYLOAD_TYPE!r}")
    signatures = envelope_data["signatures"]
    if not isinstance(signatures, list) or not all(
            isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str)
            for s in signatures):
        raise EvidenceError(f"{shown}: the envelope's signatures are not a list of {{keyid, sig}}")
    try:
        wrapped = Envelope.from_dict(copy.deepcopy(envelope_data))  # it consumes what it is given
    except (KeyError, ValueError, TypeError, binascii.Error) as err:
        raise EvidenceError(f"{shown}: not a DSSE envelope: {err}") from None
    if not signatures:
        return wrapped.payload, SignatureCheck(SignatureStatus.UNSIGNED, None, "unsigned")
    known = [s["keyid"] for s in signatures if s["keyid"] in trusted.keys]
    if not known:
        found = signatures[0]["keyid"]
        return wrapped.payload, SignatureCheck(
            SignatureStatus.UNKNOWN_KEY, found,
            f"signed by key {found[:16]}..., which is not trusted ({trusted.describe()})")
    keys = [SSlibKey.from_crypto(trusted.keys[k], keyid=k) for k in known]
    try:
        wrapped.verify(keys, 1)
    except VerificationError:
        return wrapped.payload, SignatureCheck(
            SignatureStatus.INVALID, known[0],
            f"the signature by trusted key {known[0][:16]}... does not match the payload: "
            "the evidence was changed after it was signed")
    return wrapped.payload, SignatureCheck(SignatureStatus.TRUSTED, known[0],
                                           f"signed by trusted key {known[0][:16]}...")


def _statement(payload: bytes, shown: str) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise EvidenceError(f"{shown}: the envelope's payload is not UTF-8") from None
    found = loads_strict(text, f"{shown} (payload)", "an in-toto statement")
    if not isinstance(found, dict) or found.get("_type") != STATEMENT_TYPE:
        raise EvidenceError(f"{shown}: the payload is not an in-toto Statement v1 (_type {STATEMENT_TYPE})")
    if not isinstance(found.get("subject"), list) or not isinstance(found.get("predicateType"), str) \
            or not isinstance(found.get("predicate"), dict):
        raise EvidenceError(f"{shown}: the statement lacks a subject list, a predicateType or a predicate object")
    return found


def read_bundle(path: str | Path, trusted: TrustedKeys, shown: str | None = None) -> list[Attestation]:
    """Every statement of the bundle at ``path`` (named ``shown`` in messages), each with its signature check.

    EvidenceError for a file that is not a bundle of DSSE envelopes of in-toto
    statements, and for an envelope whose trusted signature does not match its payload.
    """
    shown = str(path) if shown is None else shown
    text = read_text_strict(Path(path), shown, "evidence file")
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise EvidenceError(f"{shown}: an empty evidence file")
    if len(lines) > MAX_ENVELOPES:
        raise EvidenceError(f"{shown}: {len(lines)} envelopes, more than the {MAX_ENVELOPES} a bundle may hold")
    found = []
    for number, line in lines:
        where = f"{shown}:{number}"
        payload, check = _check(loads_strict(line, shown, "a DSSE envelope", number), trusted, where)
        if check.status is SignatureStatus.INVALID:
            raise EvidenceError(f"{where}: {check.detail}. Refusing it.")
        found.append(Attestation(_statement(payload, where), check))
    return found


def only(attestations: Sequence[Attestation], predicate_type: str, shown: str) -> Attestation:
    """The one statement of ``predicate_type`` among ``attestations`` (EvidenceError when not exactly one)."""
    matching = [a for a in attestations if a.predicate_type == predicate_type]
    if len(matching) != 1:
        raise EvidenceError(f"{shown}: holds {len(matching)} statements of predicate type {predicate_type}, "
                            "not one")
    return matching[0]

