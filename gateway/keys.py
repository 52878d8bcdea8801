"""``python -m gateway.keys``: create, list and revoke the gateway's API keys.

    python -m gateway.keys create --name alice [--rate-per-minute 30]   # prints the key, once
    python -m gateway.keys list [--json]
    python -m gateway.keys revoke 3f9c0a1b2d4e

The store is ``GATEWAY_API_KEYS_FILE`` (default ``GATEWAY_DATA_DIR/api-keys.json``), or ``--file``. A running gateway
picks up every change at its next request. Only the key's SHA-256 is stored: a lost key cannot be shown again;
revoke it and create another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.services.access.api_keys import (
    KeyRecord,
    KeyStoreError,
    editing,
    hash_key,
    new_key,
    now_iso,
    read_records,
    record_summary,
)


def default_path() -> Path:
    """The store the gateway reads with the current environment."""
    from gateway.core.settings import Settings

    return Settings().api_keys_path


def create(path: Path, name: str, rate_per_minute: int | None) -> str:
    """A new key stored in ``path``; returns the key (the only time it exists in clear)."""
    with editing(path) as records:
        key_id, key = new_key()
        while key_id in records:  # 48 random bits: a clash is unlikely, but cheap to rule out
            key_id, key = new_key()
        records[key_id] = KeyRecord(
            id=key_id, name=name, sha256=hash_key(key), created=now_iso(), rate_per_minute=rate_per_minute
        )
    return key


def revoke(path: Path, key_id: str) -> KeyRecord:
    """Mark the key revoked (kept in the file, so the id is never reused and the history stays)."""
    with editing(path) as records:
        record = records.get(key_id)
        if record is None:
            raise KeyError(key_id)
        if record.revoked is None:
            record.revoked = now_iso()
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.keys", description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, help="the key store (default: the gateway's, from GATEWAY_* variables)")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("--name", required=True, help="who or what uses the key")
    c.add_argument("--rate-per-minute", type=int, help="this key's limit (default: GATEWAY_RATE_PER_MINUTE; 0: none)")
    ls = sub.add_parser("list", help="the keys (never the secrets)")
    ls.add_argument("--json", action="store_true", help="as JSON")
    r = sub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id")
    a = p.parse_args(argv)
    path = a.file or default_path()
    try:
        if a.command == "create":
            if a.rate_per_minute is not None and a.rate_per_minute < 0:
                p.error("--rate-per-minute must be 0 (no limit) or more")
            key = create(path, a.name, a.rate_per_minute)
            print(key)
            print(
                f"created key {key.split('_')[1]} for {a.name!r} in {path}: keep it now, it is not shown again",
                file=sys.stderr,
            )
        elif a.command == "list":
            records = [record_summary(rec) for rec in read_records(path).values()]
            if a.json:
                print(json.dumps(records, indent=2))
            else:
                print(f"{'ID':<12}  {'NAME':<20}  {'CREATED':<25}  {'RATE/MIN':>8}  REVOKED")
                for rec in records:
                    rate = "default" if rec["rate_per_minute"] is None else str(rec["rate_per_minute"])
                    revoked = rec["revoked"] or "-"
                    print(f"{rec['id']:<12}  {rec['name']:<20}  {rec['created']:<25}  {rate:>8}  {revoked}")
        else:
            record = revoke(path, a.id)
            print(f"revoked key {record.id} ({record.name!r}) on {record.revoked}")
    except KeyError as exc:
        sys.exit(f"gateway.keys: no key with id {exc.args[0]!r} in {path}")
    except (KeyStoreError, OSError) as exc:
        sys.exit(f"gateway.keys: {exc}")


if __name__ == "__main__":
    main()
