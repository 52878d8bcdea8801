"""Schemathesis against the real gateway's OpenAPI schema: generated requests (valid and invalid) to every
operation never get a 5xx, and every answer matches the schema (status code and body).

The gateway under test fetches only from the hosts it lists (``download_allowlist_only``, 127.0.0.1 only), so no
generated ``url`` can make it connect or resolve a name off this machine; its resolver fails the test if called.
"""

from __future__ import annotations

from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gateway.core.settings import Settings
from gateway.main import create_app
from tests.gateway.conftest import GatewayServer, gateway_settings, tmp_files
from triton_runtime.process import TritonProcess

MAX_EXAMPLES = 25  # per operation and mode: the whole run stays well under a minute on 2 cores
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
CONFIG = schemathesis.Config.from_dict({"generation": {"mode": "all", "max-examples": MAX_EXAMPLES}, "seed": 20261121})
lookups: list[str] = []


async def no_dns(host: str, port: int) -> list[str]:
    """The gateway's resolver: with the allowlist of IPs only it is never asked; if it were, nothing resolves."""
    lookups.append(host)
    raise OSError("the schemathesis gateway resolves nothing")


@pytest.fixture(scope="module")
def fuzzed_gateway(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("fuzzed-gateway"),
        triton.grpc_url,
        allowed_hosts=["127.0.0.1"],
        download_allowlist_only=True,
        download_timeout_s=10.0,
    )
    with GatewayServer(settings, no_dns) as server:
        yield server
    assert lookups == [], lookups
    assert tmp_files(server) == []


# The schema the gateway serves at /openapi.json (checked below), loaded without starting anything; requests go
# to the running ``fuzzed_gateway``. (Schemathesis' ``from_fixture`` needs a pytest internal that pytest 9 lacks.)
OPENAPI = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


# The progress stream is excluded: a server-sent event stream stays open by design (keep-alives until its id
# finishes), so a generated request to it never completes; tests/gateway/test_progress covers it.
@schema.exclude(path_regex=r"^/api/v1/progress/").parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzzed_gateway: GatewayServer) -> None:
    case.call_and_validate(base_url=fuzzed_gateway.url, checks=CHECKS, timeout=60)


def test_the_fuzzed_schema_is_the_served_one(fuzzed_gateway: GatewayServer) -> None:
    with fuzzed_gateway.client() as c:
        assert c.get("/openapi.json").json() == OPENAPI
    labels = {op.ok().label for op in schema.get_all_operations()}  # type: ignore[union-attr]
    assert {"POST /api/v1/predict", "POST /api/v1/predict/upload", "GET /api/v1/health"} <= labels, labels
