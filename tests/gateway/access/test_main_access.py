"""``python -m gateway``'s choice of access mode: open only when asked, or for `make serve` on loopback."""

from __future__ import annotations

import pytest

from gateway.__main__ import access_mode, is_loopback
from gateway.core.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("flag", "with_triton", "host", "environ", "expected"),
    [
        (None, True, "127.0.0.1", {}, "open"),  # make serve
        (None, True, "localhost", {}, "open"),
        (None, True, "::1", {}, "open"),
        (None, True, "0.0.0.0", {}, "keys"),  # make serve on every interface: keys
        (None, True, "127.0.0.1", {"GATEWAY_AUTH": "keys"}, "keys"),  # the environment wins
        (None, False, "127.0.0.1", {}, "keys"),  # python -m gateway alone: keys
        ("open", False, "0.0.0.0", {}, "open"),  # explicit
        ("keys", True, "127.0.0.1", {}, "keys"),
    ],
)
def test_access_mode(flag: str | None, with_triton: bool, host: str, environ: dict[str, str], expected: str) -> None:
    assert access_mode(flag, with_triton, settings(host=host), environ) == expected


def test_the_setting_applies_without_a_flag() -> None:
    assert access_mode(None, False, settings(auth="open"), {"GATEWAY_AUTH": "open"}) == "open"
    assert not is_loopback("example.org") and not is_loopback("10.0.0.1") and is_loopback("127.0.0.2")
