#!/usr/bin/env python3
"""Entrypoint of the gateway image: refuse to start with placeholder secrets, then exec ``python -m gateway``.

Rules (the same under docker-compose and Kubernetes, where the Secret ships with a placeholder until replaced):

- ``CLOUDINARY_URL`` unset or empty: no Cloudinary. An empty value is removed from the environment (compose passes
  ``CLOUDINARY_URL=`` when the variable is not set on the host), so ``GATEWAY_STORAGE=auto`` means local storage.
- ``CLOUDINARY_URL`` set: it must be ``cloudinary://API_KEY:API_SECRET@CLOUD_NAME[?...]`` with none of the three parts
  empty or a placeholder (``API_KEY``, ``<your key>``, ``changeme``, ``xxx``, ``${VAR}``, ...). Otherwise the gateway
  refuses to start (exit 78, EX_CONFIG), saying which part is wrong and never printing the secret.
- ``GATEWAY_STORAGE=cloudinary`` needs ``CLOUDINARY_URL``.

``--check-only`` runs the checks and exits 0 without starting the gateway. Other arguments go to ``python -m gateway``.
Standard library only: it runs before anything else is imported.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import unquote, urlsplit

EX_CONFIG = 78  # sysexits.h: configuration error

# Whole-value placeholders (case-insensitive), and fragments that only templates contain.
_PLACEHOLDER_WORDS = {
    "key",
    "secret",
    "cloud",
    "api_key",
    "apikey",
    "api-key",
    "api_secret",
    "apisecret",
    "api-secret",
    "cloud_name",
    "cloudname",
    "cloud-name",
    "your_key",
    "your_secret",
    "your_cloud",
    "your_api_key",
    "your_api_secret",
    "your_cloud_name",
    "changeme",
    "change_me",
    "change-me",
    "replaceme",
    "replace_me",
    "replace-me",
    "placeholder",
    "example",
    "todo",
    "dummy",
    "none",
    "null",
    "secret_value",
}
_PLACEHOLDER_PATTERNS = (
    re.compile(r"^x+$", re.IGNORECASE),  # xxx, XXXX
    re.compile(r"^\*+$"),  # ****
    re.compile(r"^\.\.\.$"),
    re.compile(r"[<>{}]"),  # <your key>, {key}, ${VAR} left uninterpolated
    re.compile(r"^\$"),
    re.compile(r"replace[-_ ]?me|change[-_ ]?me|placeholder", re.IGNORECASE),
)


class ConfigError(ValueError):
    """The environment would start the gateway with a placeholder or missing secret."""


def _is_placeholder(value: str) -> bool:
    v = value.strip()
    return v.lower() in _PLACEHOLDER_WORDS or any(p.search(v) for p in _PLACEHOLDER_PATTERNS)


def check_cloudinary_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is a complete ``cloudinary://KEY:SECRET@CLOUD`` without placeholders."""
    parts = urlsplit(url.strip())
    if parts.scheme != "cloudinary":
        raise ConfigError("CLOUDINARY_URL must start with cloudinary:// (cloudinary://API_KEY:API_SECRET@CLOUD_NAME)")
    named = {
        "API key": unquote(parts.username or ""),
        "API secret": unquote(parts.password or ""),
        "cloud name": parts.hostname or "",
    }
    for what, value in named.items():
        if not value:
            raise ConfigError(f"CLOUDINARY_URL has no {what} (cloudinary://API_KEY:API_SECRET@CLOUD_NAME)")
        if _is_placeholder(value):
            raise ConfigError(
                f"CLOUDINARY_URL's {what} is a placeholder: set the real value (docker-compose: the CLOUDINARY_URL "
                "variable; Kubernetes: the deepfake-cloudinary Secret), or unset CLOUDINARY_URL for local storage"
            )


def checked_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment to start the gateway with; ConfigError when it must not start."""
    out = dict(env)
    url = out.get("CLOUDINARY_URL")
    if url is not None and not url.strip():
        del out["CLOUDINARY_URL"]  # empty = not set: local storage under GATEWAY_STORAGE=auto
        url = None
    storage = out.get("GATEWAY_STORAGE", "auto").strip().lower()
    if storage == "cloudinary" and url is None:
        raise ConfigError("GATEWAY_STORAGE=cloudinary needs CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
    if url is not None and storage != "local":
        check_cloudinary_url(url)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check_only = "--check-only" in args
    args = [a for a in args if a != "--check-only"]
    try:
        env = checked_environment(os.environ)
    except ConfigError as exc:
        print(f"gateway: refusing to start: {exc}", file=sys.stderr)
        return EX_CONFIG
    if check_only:
        print("gateway: configuration checks passed", file=sys.stderr)
        return 0
    os.execvpe(sys.executable, [sys.executable, "-m", "gateway", *args], env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
