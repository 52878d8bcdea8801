"""Reading one file's C2PA manifest store with ``c2pa-python``, inside a worker process (``worker``).

Imports only the standard library and the C2PA bindings: the worker processes start fast and small. The answer is
a small JSON-able summary (bounded lists and strings), never the manifest itself.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
MAX_ITEMS = 32
MAX_TEXT = 200

_context: Any = None  # the worker's c2pa.Context (trust anchors, no network), built once by ``init_worker``


def reader_settings(trust_anchors_pem: str | None) -> dict[str, Any]:
    """c2pa settings: verify trust against the given anchors only; never fetch anything over the network (remote
    manifests, OCSP): reading a file must not become a request to wherever a hostile manifest points."""
    settings: dict[str, Any] = {
        "version": 1,
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        },
    }
    if trust_anchors_pem:
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    return settings


def init_worker(settings_json: str, memory_bytes: int) -> None:
    """Worker start: cap the address space (a hostile manifest cannot eat the host's memory), build the
    context once."""
    global _context
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import c2pa

    _context = c2pa.Context(c2pa.Settings.from_json(settings_json))


def read_summary(path: str) -> dict[str, Any]:
    """The summary of ``path``'s manifest store; ``present: False`` without one. Reader failures are reported as
    ``error`` (the caller turns them into ``valid: false`` and an ``errors`` entry)."""
    import c2pa

    try:
        with Path(path).open("rb") as f:
            reader = c2pa.Reader(None, f, None, _context)
            with reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return absent()
    except c2pa.C2paError.NotSupported:
        return absent()
    except c2pa.C2paError as exc:
        return {**absent(), "present": True, "error": _text(f"{type(exc).__name__.lstrip('_')}: {exc}")}
    return summarise(store, state, results)


def absent() -> dict[str, Any]:
    """The summary of a file without content credentials."""
    return {
        "present": False,
        "valid": False,
        "trusted": False,
        "validation_state": None,
        "validation_errors": [],
        "signer": None,
        "issuer": None,
        "claim_generator": None,
        "created": None,
        "actions": [],
        "ai_generated": False,
        "ingredients_count": 0,
    }


def summarise(store: dict[str, Any], state: str | None, results: dict[str, Any]) -> dict[str, Any]:
    """The answer's fields from the reader's JSON, validation state and results."""
    manifest = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    signature = manifest.get("signature_info") or {}
    actions = [_action(a) for a in _actions(manifest)]
    created = signature.get("time") or next((a["when"] for a in actions if a.get("when")), None)
    return {
        "present": True,
        "valid": state in ("Valid", "Trusted"),
        "trusted": state == "Trusted",
        "validation_state": state,
        "validation_errors": _failures(results),
        "signer": _text(signature.get("common_name")),
        "issuer": _text(signature.get("issuer")),
        "claim_generator": _generator(manifest),
        "created": _text(created),
        "actions": actions[:MAX_ITEMS],
        "ai_generated": any(a["digital_source_type"] in AI_SOURCE_TYPES for a in actions),
        "ingredients_count": len(manifest.get("ingredients") or []),
    }


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action of the active manifest's actions assertions (``c2pa.actions``, ``c2pa.actions.v2``, and their
    ``__N`` instances)."""
    found: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        label = str(assertion.get("label", "")).split("__")[0]
        if label in ("c2pa.actions", "c2pa.actions.v2"):
            data = assertion.get("data") or {}
            found.extend(a for a in data.get("actions") or [] if isinstance(a, dict))
    return found


def _action(action: dict[str, Any]) -> dict[str, Any]:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        agent = " ".join(str(agent[k]) for k in ("name", "version") if agent.get(k))
    source = action.get("digitalSourceType")
    return {
        "action": _text(action.get("action")),
        "digital_source_type": _text(str(source).rstrip("/").rsplit("/", 1)[-1]) if source else None,
        "software_agent": _text(agent),
        "when": _text(action.get("when")),
    }


def _generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return _text(" ".join(str(info[0][k]) for k in ("name", "version") if info[0].get(k)))
    return _text(manifest.get("claim_generator"))


def _failures(results: dict[str, Any]) -> list[str]:
    """The failure codes of the active manifest and of its ingredients, in order, without repeats."""
    codes: list[str] = []
    sections = [results.get("activeManifest") or {}] + [
        d.get("validationDeltas") or {} for d in results.get("ingredientDeltas") or [] if isinstance(d, dict)
    ]
    for section in sections:
        for item in section.get("failure") or []:
            code = _text(item.get("code")) if isinstance(item, dict) else None
            if code and code not in codes:
                codes.append(code)
    return codes[:MAX_ITEMS]


def _text(value: object) -> str | None:
    """A bounded single-line string, or None."""
    if value is None or value == "":
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
