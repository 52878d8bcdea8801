"""``python -m gateway.keys`` as a user runs it (subprocesses), and the key store the gateway reads."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from gateway.keys import create
from gateway.services.access.api_keys import KeyStore, hash_key, key_id_of, read_records

REPO = Path(__file__).resolve().parents[3]


def keys_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.keys", *args],
        cwd=REPO,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_list_revoke_round_trip(tmp_path: Path) -> None:
    store = tmp_path / "keys" / "api-keys.json"  # the folder does not exist yet
    made = keys_cli("--file", str(store), "create", "--name", "alice", "--rate-per-minute", "30")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = key_id_of(key)
    assert key_id and key.startswith(f"dfk_{key_id}_") and len(key.split("_", 2)[2]) == 43
    assert key_id in made.stderr and "not shown again" in made.stderr and key not in made.stderr

    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    text = store.read_text()
    secret = key.split("_", 2)[2]
    assert secret not in text and key not in text  # only the hash is stored
    (record,) = json.loads(text)["keys"]
    assert record["sha256"] == hash_key(key) and record["name"] == "alice" and record["rate_per_minute"] == 30
    assert record["revoked"] is None and record["created"]

    second = keys_cli("--file", str(store), "create", "--name", "bob").stdout.strip()
    listed = keys_cli("--file", str(store), "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {key_id, key_id_of(second)}
    assert rows[key_id]["name"] == "alice" and rows[key_id_of(second) or ""]["rate_per_minute"] is None
    assert "sha256" not in listed.stdout and secret not in listed.stdout
    table = keys_cli("--file", str(store), "list").stdout
    assert "alice" in table and "bob" in table and "default" in table

    revoked = keys_cli("--file", str(store), "revoke", key_id)
    assert revoked.returncode == 0 and key_id in revoked.stdout
    records = read_records(store)
    assert records[key_id].revoked is not None and records[key_id_of(second) or ""].revoked is None
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert not [p.name for p in store.parent.iterdir() if p.name.endswith(".tmp")]  # atomic writes left nothing

    unknown = keys_cli("--file", str(store), "revoke", "000000000000")
    assert unknown.returncode != 0 and "no key with id '000000000000'" in unknown.stderr


def test_default_store_follows_the_gateway_settings(tmp_path: Path) -> None:
    made = keys_cli("create", "--name", "ops", env={"GATEWAY_DATA_DIR": str(tmp_path / "data")})
    assert made.returncode == 0, made.stderr
    assert key_id_of(made.stdout.strip()) in read_records(tmp_path / "data" / "api-keys.json")
    explicit = tmp_path / "elsewhere.json"
    made = keys_cli("create", "--name", "ops2", env={"GATEWAY_API_KEYS_FILE": str(explicit)})
    assert made.returncode == 0 and explicit.is_file(), made.stderr


def test_broken_store_is_reported_not_overwritten(tmp_path: Path) -> None:
    store = tmp_path / "api-keys.json"
    store.write_text("{not json")
    r = keys_cli("--file", str(store), "create", "--name", "x")
    assert r.returncode != 0 and "cannot read the key store" in r.stderr and r.stdout == ""
    assert store.read_text() == "{not json"
    assert keys_cli("--file", str(store), "create", "--name", "x", "--rate-per-minute", "-1").returncode != 0


def test_key_store_verifies_and_follows_edits(tmp_path: Path) -> None:
    store_path = tmp_path / "api-keys.json"
    store = KeyStore(store_path)  # no file yet: no key is valid
    assert store.active_count == 0
    first = create(store_path, "a", None)
    record = store.verify(first)  # the file appeared after the store was built: re-read
    assert record is not None and record.active and record.name == "a"
    wrong_secret = first[:-4] + ("AAAA" if not first.endswith("AAAA") else "BBBB")
    assert store.verify(wrong_secret) is None
    assert store.verify("dfk_nothex_" + "x" * 43) is None and store.verify("") is None
    second = create(store_path, "b", 5)  # created after the store was loaded: seen at once
    assert (r2 := store.verify(second)) is not None and r2.rate_per_minute == 5
    store_path.write_text("garbage")  # a bad edit keeps the keys read before
    assert store.verify(first) is not None
