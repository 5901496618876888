"""Keys: the Ed25519 key of the host that ran the tests, and the keys a project trusts.

A host signs every report it writes with its own private key, kept outside
any repository in ``$PV_KEY_DIR`` (default ``$XDG_CONFIG_HOME/pv``, else
``~/.config/pv``) as ``signing-key.pem`` (mode 0600), next to its public key
``signing-key.pub``; it signs the DSSE envelopes of the host's evidence
(``pv.attest.envelopes``). A project trusts the public keys (PEM files
``*.pub``) that :func:`trusted_key_paths` lists; ``pv gate --release`` accepts
only evidence signed by one of them.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pv._util.errors import UserError
from pv._util.files import InputError, read_input, write_atomic
from pv._util.config import current


ALGORITHM = "ed25519"
KEY_DIR_ENV = "PV_KEY_DIR"
PRIVATE_KEY_FILE = "signing-key.pem"
PUBLIC_KEY_FILE = "signing-key.pub"
RETIRED_DIR = "retired"
PUBLIC_KEY_SUFFIX = ".pub"
#: the folder of trusted public keys in a project, until a configuration names others
TRUSTED_KEYS_DIR = "keys"
#: Largest key file read, in bytes (a PEM Ed25519 key is under 200).
MAX_KEY_BYTES = 64 * 1024


class SigningError(UserError):
    """A key that cannot be made, read or used."""


@dataclass(frozen=True)
class HostKey:
    """This host's signing key and where it lives."""

    private: Ed25519PrivateKey
    path: Path

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())


# --- keys ---------------------------------------------------------------------------------


def key_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """Where this host's key lives: ``option``, ``$PV_KEY_DIR``, ``$XDG_CONFIG_HOME/pv`` or ``~/.config/pv``."""
    if option:
        return Path(option)
    if os.environ.get(KEY_DIR_ENV):
        return Path(os.environ[KEY_DIR_ENV])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "pv"


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """The sha256 (hex) of the raw 32-byte public key: how reports name their key."""
    return hashlib.sha256(_raw_public(public)).hexdigest()


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM text (SubjectPublicKeyInfo)."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _inside_repository(folder: Path) -> Path | None:
    for parent in [folder, *folder.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def _write_private(path: Path, pem: bytes) -> None:
    write_atomic(path, pem, mode=0o600)


def _write_public(path: Path, public: Ed25519PublicKey) -> None:
    write_atomic(path, public_pem(public))


def _new_key(folder: Path) -> HostKey:
    repository = _inside_repository(folder.resolve())
    if repository is not None:
        raise SigningError(
            f"{folder}: lies inside the repository {repository}; a private key must live outside "
            f"any repository (choose another folder with --key-dir or ${KEY_DIR_ENV})"
        )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(folder / PRIVATE_KEY_FILE, pem)
        _write_public(folder / PUBLIC_KEY_FILE, private.public_key())
    except OSError as err:
        raise SigningError(f"{folder}: cannot write the key: {err.strerror or err}") from None
    return HostKey(private, folder / PRIVATE_KEY_FILE)


def generate_key(folder: Path) -> HostKey:
    """A new key in ``folder``; SigningError when one is there already (rotate it instead)."""
    if (folder / PRIVATE_KEY_FILE).exists():
        raise SigningError(
            f"{folder / PRIVATE_KEY_FILE}: a signing key exists already; `pv key rotate` replaces it"
        )
    return _new_key(folder)


def rotate_key(folder: Path) -> tuple[str, HostKey]:
    """Replace the key in ``folder`` by a new one; the old public key moves to ``retired/``.

    Returns the old key's id and the new key. The old private key is deleted.
    """
    old = load_host_key(folder)
    if old is None:
        raise SigningError(f"{folder}: no signing key to rotate; `pv key generate` makes one")
    old_id = old.key_id
    retired = folder / RETIRED_DIR / f"{old_id[:16]}{PUBLIC_KEY_SUFFIX}"
    try:
        retired.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_public(retired, old.private.public_key())
        (folder / PRIVATE_KEY_FILE).unlink()
    except OSError as err:
        raise SigningError(f"{folder}: cannot retire the old key: {err.strerror or err}") from None
    return old_id, _new_key(folder)


def load_host_key(folder: Path | None = None) -> HostKey | None:
    """This host's key from ``folder`` (default :func:`key_dir`), or None when there is none.

    SigningError when the file is unreadable, not an Ed25519 private key, or
    readable by other users.
    """
    path = (key_dir() if folder is None else folder) / PRIVATE_KEY_FILE
    try:
        mode = path.stat().st_mode
        raw = read_input(path, MAX_KEY_BYTES)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SigningError(f"{path}: the signing key: cannot read: {err.strerror or err}") from None
    except InputError as err:
        if err.missing:
            return None
        raise SigningError(f"{path}: the signing key: {err.reason}") from None
    if mode & 0o077:
        raise SigningError(
            f"{path}: the signing key has mode {mode & 0o777:04o}, so other users can read it; "
            f"run `chmod 600 {path}` (or rotate the key if it may have been copied)"
        )
    try:
        private = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as err:
        raise SigningError(f"{path}: not a PEM private key without a password: {err}") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 key ({type(private).__name__})")
    return HostKey(private, path)


def published_name(key: HostKey) -> str:
    """The file name under which a project trusts ``key``: ``<host>-<id prefix>.pub``."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname()) or "host"
    return f"{host}-{key.key_id[:16]}{PUBLIC_KEY_SUFFIX}"


def publish(key: HostKey, folder: Path, replaces: str | None = None) -> Path:
    """Write ``key``'s public key into the trusted folder ``folder``; drop the key ``replaces`` from it."""
    if replaces is not None:
        for path, found in _public_keys_in(folder).items():
            if found == replaces:
                path.unlink()
    target = folder / published_name(key)
    _write_public(target, key.private.public_key())
    return target


# --- the keys a project trusts ------------------------------------------------------------


def trusted_key_paths(options: Sequence[Path] = ()) -> list[Path]:
    """Files and folders of trusted public keys: ``options``, else ``[tool.pv] trusted_keys``,
    else the ``keys/`` folder of the project (none outside a pv project)."""
    if options:
        return list(options)
    config = current()
    if config.trusted_keys:
        return list(config.trusted_keys)
    return [config.root / TRUSTED_KEYS_DIR] if config.root is not None else []


def _read_public(path: Path) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(read_input(path, MAX_KEY_BYTES))
    except InputError as err:
        raise SigningError(f"{path}: the public key: {err.reason}") from None
    except (ValueError, TypeError) as err:
        raise SigningError(f"{path}: not a PEM public key: {err}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key ({type(public).__name__})")
    return public


def _public_keys_in(folder: Path) -> dict[Path, str]:
    return {path: key_id(_read_public(path)) for path in sorted(folder.glob(f"*{PUBLIC_KEY_SUFFIX}"))}


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a gate trusts, by key id, and where they were looked for."""

    keys: dict[str, Ed25519PublicKey]
    sources: list[str]

    def describe(self) -> str:
        """``N trusted key(s) from PATHS`` for messages."""
        return f"{len(self.keys)} trusted key(s) from {', '.join(self.sources) or 'nowhere'}"


def trusted_keys(options: Sequence[Path] = ()) -> TrustedKeys:
    """Read every public key of :func:`trusted_key_paths`; a missing default folder trusts none."""
    keys: dict[str, Ed25519PublicKey] = {}
    paths = trusted_key_paths(options)
    for path in paths:
        if path.is_dir():
            files = list(_public_keys_in(path))
        elif path.is_file():
            files = [path]
        elif options:
            raise SigningError(f"--trusted-keys: {path} is neither a public key file nor a folder")
        else:
            files = []
        for file in files:
            public = _read_public(file)
            keys[key_id(public)] = public
    return TrustedKeys(keys, [_shown(p) for p in paths])


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
