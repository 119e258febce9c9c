"""Ed25519 signing of chain checkpoints (``cryptography``), and the keys for it.

Where the signing key comes from (first that is set wins):

1. ``AUDITRAIL_SIGNING_KEY_FILE``: path of a key file;
2. ``AUDITRAIL_SIGNING_KEY``: the 32-byte Ed25519 private seed, base64 (standard or urlsafe, padding optional);
3. ``key_file`` passed to :func:`load_signer` (the config's setting);
4. otherwise a generated key, stored as ``signing-key.pem`` (PKCS#8 PEM, mode 0600) in the spool directory
   and reused by later runs. A loud WARNING is logged (once per process): checkpoints are then signed with a
   key nobody distributed, and auditors must be given its public key (``auditrail keys public``).
   Without a spool directory the generated key lives in memory only (WARNING too).

A key file holds either a PEM private key (PKCS#8 ``-----BEGIN PRIVATE KEY-----``, unencrypted, as
``openssl genpkey -algorithm ed25519`` writes it), the raw 32-byte seed, or the seed as base64 text.
A key file readable by group or others is used with a warning.

The key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key.

A checkpoint is the payload of an ``audit.checkpoint`` event::

    {"alg": "Ed25519", "chain_id": ..., "seq": N, "head": <hash of event N>, "time_unix_nano": "<decimal>",
     "key_id": ..., "signature": <base64 Ed25519 signature>, "public_key": <base64 raw 32-byte public key>}

``signature`` signs the RFC 8785 canonical JSON (``chain.canonical_json``) of the object of the first six
fields (:func:`checkpoint_payload`). ``public_key`` travels with it so exports can be checked offline;
``auditrail verify --key`` pins the keys that are trusted. The checkpoint event is itself an event of the
chain: it gets the next seq (N+1) and its own hash (``Chain.checkpoint`` does both atomically).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import semconv
from .chain import CHECKPOINT_EVENT, canonical_json
from .events import AuditEvent
from .native import native_function

__all__ = [
    "ALGORITHM",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "GENERATED_KEY_NAME",
    "Signer",
    "SigningKeyError",
    "checkpoint_event",
    "checkpoint_payload",
    "key_id_of",
    "load_private_key",
    "load_public_key",
    "load_signer",
    "main_keys",
    "public_key_pem",
    "public_key_b64",
    "resolve_signer",
    "sign_checkpoint",
    "verify_checkpoint_signature",
]

_logger = logging.getLogger(__name__)

ALGORITHM = "Ed25519"
ENV_KEY_FILE = "AUDITRAIL_SIGNING_KEY_FILE"
ENV_KEY = "AUDITRAIL_SIGNING_KEY"
GENERATED_KEY_NAME = "signing-key.pem"
SIGNED_FIELDS = ("alg", "chain_id", "seq", "head", "time_unix_nano", "key_id")

_warned_generated = False
_warn_lock = threading.Lock()


class SigningKeyError(ValueError):
    """A signing or verification key that cannot be loaded (message says which and why)."""


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, standard base64."""
    return base64.b64encode(_raw_public(public_key)).decode("ascii")


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _native_signer(private_key: Ed25519PrivateKey, public_key: Ed25519PublicKey) -> Any:
    """The native core's Ed25519Signer for this key, or None (not built, or off)."""
    cls = native_function("Ed25519Signer")
    if cls is None:
        return None
    signer = cls(private_key.private_bytes_raw())
    return signer if signer.public_key() == public_key.public_bytes_raw() else None


class Signer:
    """An Ed25519 private key with its key id."""

    def __init__(self, private_key: Ed25519PrivateKey, *, source: str = "memory", generated: bool = False) -> None:
        """Wrap ``private_key``; ``source`` says where it came from (for messages), ``generated`` if made here."""
        self._key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.key_id: str = key_id_of(self.public_key)
        self.source = source
        self.generated = generated
        self._native = _native_signer(private_key, self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data`` (the native core's, when built: the same bytes, made
        without giving up the GIL, which a drain thread among busy app threads gets back only after 5 ms)."""
        native = self._native
        return native.sign(data) if native is not None else self._key.sign(data)

    def public_key_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return public_key_pem(self.public_key)

    def public_key_b64(self) -> str:
        """The raw public key, base64."""
        return public_key_b64(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, source={self.source!r})"


# --------------------------------------------------------------------------------------------------
# Loading keys


def _b64(text: str) -> bytes:
    """Standard or urlsafe base64, padding optional."""
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as error:
        raise SigningKeyError(f"not base64: {error}") from None


def _private_from_bytes(data: bytes, where: str) -> Ed25519PrivateKey:
    """A private key from PEM, a raw 32-byte seed, or a base64 seed."""
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError(f"{where}: not an unencrypted PEM private key ({error})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{where}: a {type(key).__name__}, not an Ed25519 private key")
        return key
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    try:
        seed = _b64(data.decode("ascii"))
    except (UnicodeDecodeError, SigningKeyError):
        seed = b""
    if len(seed) != 32:
        raise SigningKeyError(f"{where}: expected a PEM private key, a raw 32-byte seed or a base64 32-byte seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key in a file (PEM, raw 32-byte seed, or base64 seed); OSError / SigningKeyError."""
    path = Path(path)
    data = path.read_bytes()
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _logger.warning("signing key file %s is accessible by group/others (mode %o); chmod 600 it",
                            path, stat.S_IMODE(mode))
    except OSError:
        pass
    return _private_from_bytes(data, str(path))


def load_public_keys(paths: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys from files (``--key``), by key id; SigningKeyError names the file that failed."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            with open(path, "rb") as stream:
                public_key = load_public_key(stream.read(), path)
        except OSError as error:
            raise SigningKeyError(f"key {path}: {error.strerror or error}") from None
        except ValueError as error:  # SigningKeyError included
            raise SigningKeyError(f"key {path}: {error}") from None
        keys[key_id_of(public_key)] = public_key
    return keys


def load_public_key(data: bytes | str, where: str = "key") -> Ed25519PublicKey:
    """A public key from PEM (public or private key), or base64 / raw 32 bytes of the public key."""
    if isinstance(data, str):
        data = data.encode()
    if b"PRIVATE KEY-----" in data:
        return _private_from_bytes(data, where).public_key()
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as error:
            raise SigningKeyError(f"{where}: not a PEM public key ({error})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{where}: a {type(key).__name__}, not an Ed25519 public key")
        return key
    raw = data if len(data) == 32 else _b64(data.decode("ascii", errors="replace"))
    if len(raw) != 32:
        raise SigningKeyError(f"{where}: expected a PEM key or a base64 32-byte Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def generated_key_path(spool_dir: str | os.PathLike[str]) -> Path:
    """Where a generated key is kept in a spool directory."""
    return Path(spool_dir) / GENERATED_KEY_NAME


def resolve_signer(
    key_file: str | os.PathLike[str] | None = None,
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Signer | None:
    """The configured key (env, then ``key_file``, then an existing generated key in ``spool_dir``), or None."""
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY_FILE):
        path = env[ENV_KEY_FILE]
        return Signer(load_private_key(path), source=f"{ENV_KEY_FILE}={path}")
    if env.get(ENV_KEY):
        return Signer(_private_from_bytes(env[ENV_KEY].encode(), ENV_KEY), source=ENV_KEY)
    if key_file:
        return Signer(load_private_key(key_file), source=os.fspath(key_file))
    if spool_dir is not None:
        path = generated_key_path(spool_dir)
        if path.exists():
            return Signer(load_private_key(path), source=str(path), generated=True)
    return None


def load_signer(
    key_file: str | os.PathLike[str] | None = None,
    *,
    spool_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Signer:
    """The signing key (see the module docstring for the order); generates and stores one when none is set.

    Raises OSError / SigningKeyError when a configured key cannot be read; never generates over a bad setting.
    """
    signer = resolve_signer(key_file, spool_dir=spool_dir, environ=environ)
    if signer is None:
        signer = _generate(spool_dir)
    if signer.generated:
        _warn_generated(signer)
    return signer


def _generate(spool_dir: str | os.PathLike[str] | None) -> Signer:
    """A new key, stored 0600 under ``spool_dir`` (or kept in memory); another process's key wins a race."""
    key = Ed25519PrivateKey.generate()
    if spool_dir is None:
        return Signer(key, source="memory (generated, not stored)", generated=True)
    path = generated_key_path(spool_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the app generated it first
        return Signer(load_private_key(path), source=str(path), generated=True)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Signer(key, source=str(path), generated=True)


def _warn_generated(signer: Signer) -> None:
    """The loud, once-per-process warning about a generated key."""
    global _warned_generated
    with _warn_lock:
        if _warned_generated:
            return
        _warned_generated = True
    how = (f"run `auditrail keys public --key-file {signer.source}` and hand the output over"
           if os.path.exists(signer.source) else "its public key is only in the checkpoints themselves")
    _logger.warning(
        "AUDIT CHECKPOINTS ARE SIGNED WITH A GENERATED KEY (key id %s, %s). Nobody can tell it from a forger's "
        "key unless auditors are given its public key: %s; or configure a key with %s / %s.",
        signer.key_id, signer.source, how, ENV_KEY_FILE, ENV_KEY,
    )


# --------------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_payload(chain_id: str, seq: int, head_hash: str, time_ns: int, key_id: str) -> dict[str, Any]:
    """The signed fields of a checkpoint: chain ``chain_id`` up to event ``seq`` whose hash is ``head_hash``."""
    return {
        "alg": ALGORITHM,
        "chain_id": chain_id,
        "seq": int(seq),
        "head": head_hash,
        "time_unix_nano": str(int(time_ns)),  # ns exceed 2**53: a string, as in the event hash
        "key_id": key_id,
    }


def sign_checkpoint(signer: Signer, chain_id: str, seq: int, head_hash: str, time_ns: int) -> dict[str, Any]:
    """The full checkpoint payload: the signed fields plus ``signature`` and ``public_key`` (both base64)."""
    payload = checkpoint_payload(chain_id, seq, head_hash, time_ns, signer.key_id)
    signature = signer.sign(canonical_json(payload))
    payload["signature"] = base64.b64encode(signature).decode("ascii")
    payload["public_key"] = signer.public_key_b64()
    return payload


def verify_checkpoint_signature(payload: Mapping[str, Any], public_key: Ed25519PublicKey) -> bool:
    """True when ``payload['signature']`` is a valid signature of its signed fields by ``public_key``."""
    try:
        signed = {name: payload[name] for name in SIGNED_FIELDS}
        signature = _b64(payload["signature"])
        public_key.verify(signature, canonical_json(signed))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return False
    return True


def checkpoint_event(payload_json: str, time_ns: int, tenant: str | None = semconv.GLOBAL_TENANT) -> AuditEvent:
    """The ``audit.checkpoint`` event for a payload: system actor, the chain's tenant, low risk."""
    return AuditEvent(
        event_type=CHECKPOINT_EVENT,
        tenant=tenant,
        actor="auditrail",
        actor_type="system",
        payload=payload_json,
        risk="low",
        time_unix_nano=time_ns,
    )


# --------------------------------------------------------------------------------------------------
# Command line


def main_keys(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``auditrail keys public [--key-file F]``: the public key (PEM) and key id; 2 when there is no key."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="auditrail keys", description="Checkpoint signing keys.")
    sub = parser.add_subparsers(dest="action", required=True)
    public = sub.add_parser("public", help="print the public key (PEM) and key id of the signing key")
    public.add_argument("--key-file", help=f"private key file (default: ${ENV_KEY_FILE}, ${ENV_KEY}, or the key "
                                           "generated in the spool directory of audit.yaml)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        if args.key_file:
            signer: Signer | None = Signer(load_private_key(args.key_file), source=args.key_file)
        else:
            signer = resolve_signer(spool_dir=_configured_spool_dir())
    except OSError as error:
        print(f"auditrail keys: error: {error.filename or ''}: {error.strerror or error}", file=err)
        return 2
    except SigningKeyError as error:
        print(f"auditrail keys: error: {error}", file=err)
        return 2
    if signer is None:
        print(f"auditrail keys: error: no signing key: set {ENV_KEY_FILE} or {ENV_KEY}, pass --key-file, or run "
              "the app once so it generates one in its spool directory", file=err)
        return 2
    out.write(signer.public_key_pem())
    out.write(f"key id: {signer.key_id}\nsource: {signer.source}\n")
    return 0


def _configured_spool_dir() -> str | None:
    """The spool directory of the audit.yaml in effect, if any and readable."""
    from .config import ConfigError, config_path, load_config

    path = config_path()
    if path is None:
        return ".auditrail/spool" if Path(".auditrail/spool").is_dir() else None
    try:
        return load_config(path).delivery.spool_dir
    except (ConfigError, OSError):
        return None
