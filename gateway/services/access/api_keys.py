"""API keys: their format, the JSON key store file, and its atomic, locked edits (``python -m gateway.keys``).

A key is ``dfk_<id>_<secret>``: the 12-hex-digit id names the key in logs and in the CLI; the secret (32 random
bytes, URL-safe base64) is shown once when the key is created and never stored. The store keeps the SHA-256 of the
whole key: a key is 256 random bits, so a plain hash cannot be brute-forced and needs no salt or slow KDF.

The file is ``{"version": 1, "keys": [{id, name, sha256, created, revoked, rate_per_minute}, ...]}``, mode 0600,
replaced atomically on every edit. The gateway re-reads it when it changes (``KeyStore.verify`` stats it), so keys
created or revoked with the CLI apply to the next request without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.access")

PREFIX = "dfk"
_KEY = re.compile(r"^dfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
FILE_MODE = 0o600


class KeyStoreError(Exception):
    """The key store file cannot be read or has the wrong shape."""


@dataclass
class KeyRecord:
    """One key as stored: never the key itself, only its SHA-256."""

    id: str
    name: str
    sha256: str
    created: str
    revoked: str | None = None
    rate_per_minute: int | None = None  # None: the gateway's GATEWAY_RATE_PER_MINUTE

    @property
    def active(self) -> bool:
        return self.revoked is None


def hash_key(key: str) -> str:
    """The hex SHA-256 stored for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(id, key)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(presented: str) -> str | None:
    """The id part of a well-formed key, else None (safe to log: never the secret)."""
    match = _KEY.match(presented)
    return match.group(1) if match else None


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_records(path: Path) -> dict[str, KeyRecord]:
    """The records of the file at ``path`` by id ({} when it does not exist)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"cannot read the key store {path}: {exc}") from exc
    try:
        records = [KeyRecord(**item) for item in raw["keys"]]
    except (KeyError, TypeError) as exc:
        raise KeyStoreError(f"the key store {path} is not a gateway key file: {exc}") from exc
    return {r.id: r for r in records}


def write_records(path: Path, records: dict[str, KeyRecord]) -> None:
    """Replace the file atomically (temp file in the same folder, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": 1, "keys": [asdict(r) for r in records.values()]}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def editing(path: Path) -> Iterator[dict[str, KeyRecord]]:
    """Read, let the block change the records, write back; a lock file serialises concurrent CLI runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(os.open(lock_path, os.O_CREAT | os.O_RDWR, FILE_MODE)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records = read_records(path)
        yield records
        write_records(path, records)


class KeyStore:
    """The gateway's view of the key store file, re-read whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, KeyRecord] = {}
        self._signature: tuple[int, int, int] | None = None
        self._reload()

    @property
    def active_count(self) -> int:
        return sum(r.active for r in self._records.values())

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return
        self._signature = signature
        if signature is None:
            self._records = {}
            log.warning("no API key store at %s: every API request is refused until a key is created", self.path)
            return
        try:
            self._records = read_records(self.path)
        except KeyStoreError as exc:  # keep the keys we had: a bad edit must not lock everybody out, nor in
            log.error("%s; keeping the %d keys read before", exc, len(self._records))
            return
        log.info("API keys loaded from %s: %d active", self.path, self.active_count)

    def verify(self, presented: str) -> KeyRecord | None:
        """The record of this key when it is well-formed and its hash matches (revoked or not), else None."""
        self._reload()
        key_id = key_id_of(presented)
        record = self._records.get(key_id) if key_id else None
        expected = record.sha256 if record else "0" * 64
        matches = hmac.compare_digest(expected, hash_key(presented))  # constant time
        return record if record is not None and matches else None


def record_summary(record: KeyRecord) -> dict[str, Any]:
    """What ``list`` shows: everything but the hash."""
    return {k: v for k, v in asdict(record).items() if k != "sha256"}
