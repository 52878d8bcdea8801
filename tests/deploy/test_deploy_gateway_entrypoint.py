"""docker/gateway_entrypoint.py: the gateway image refuses to start with placeholder or incomplete secrets."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "docker" / "gateway_entrypoint.py"
GOOD_URL = "cloudinary://123456789012345:AbC-dEf_123xyz@my-cloud"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_entrypoint", ENTRYPOINT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ep = _load()


@pytest.mark.parametrize(
    "url",
    [
        "cloudinary://API_KEY:API_SECRET@CLOUD_NAME",
        "cloudinary://KEY:SECRET@CLOUD",
        "cloudinary://<api_key>:<api_secret>@<cloud_name>",
        "cloudinary://your_api_key:your_api_secret@your_cloud_name",
        "cloudinary://123456789012345:changeme@my-cloud",
        "cloudinary://123456789012345:xxxxxxxx@my-cloud",
        "cloudinary://123456789012345:****@my-cloud",
        "cloudinary://${KEY}:${SECRET}@my-cloud",
        "cloudinary://123456789012345:REPLACE_ME@my-cloud",
        "cloudinary://123456789012345:s3cr3t@example",
    ],
)
def test_placeholders_are_refused(url: str) -> None:
    with pytest.raises(ep.ConfigError, match="placeholder") as info:
        ep.checked_environment({"CLOUDINARY_URL": url})
    secret = url.split(":")[2].split("@")[0]
    if len(secret) > 6:
        assert secret not in str(info.value), "the message must not echo the secret"


@pytest.mark.parametrize(
    ("url", "missing"),
    [
        ("cloudinary://123456789012345@my-cloud", "API secret"),
        ("cloudinary://:s3cr3t@my-cloud", "API key"),
        ("cloudinary://123456789012345:s3cr3t@", "cloud name"),
        ("https://123456789012345:s3cr3t@my-cloud", "cloudinary://"),
        ("changeme", "cloudinary://"),
    ],
)
def test_incomplete_urls_are_refused(url: str, missing: str) -> None:
    with pytest.raises(ep.ConfigError, match=missing):
        ep.checked_environment({"CLOUDINARY_URL": url})


def test_real_looking_urls_pass() -> None:
    assert ep.checked_environment({"CLOUDINARY_URL": GOOD_URL})["CLOUDINARY_URL"] == GOOD_URL
    local = GOOD_URL + "?upload_prefix=http://127.0.0.1:9000"  # the SDK's test-server form
    assert ep.checked_environment({"CLOUDINARY_URL": local, "GATEWAY_STORAGE": "cloudinary"})


def test_unset_or_empty_means_local_storage() -> None:
    assert "CLOUDINARY_URL" not in ep.checked_environment({})
    assert "CLOUDINARY_URL" not in ep.checked_environment({"CLOUDINARY_URL": "  ", "OTHER": "x"})


def test_cloudinary_storage_needs_a_url() -> None:
    with pytest.raises(ep.ConfigError, match="GATEWAY_STORAGE=cloudinary needs CLOUDINARY_URL"):
        ep.checked_environment({"GATEWAY_STORAGE": "cloudinary", "CLOUDINARY_URL": ""})


def test_local_storage_ignores_an_unused_url() -> None:
    env = {"GATEWAY_STORAGE": "local", "CLOUDINARY_URL": "cloudinary://API_KEY:API_SECRET@CLOUD_NAME"}
    assert ep.checked_environment(env) == env


def test_the_shipped_kubernetes_secret_is_refused() -> None:
    """k8s/base ships the Secret with a placeholder and GATEWAY_STORAGE=cloudinary: pods refuse until it is set."""
    secret = yaml.safe_load((REPO / "k8s" / "base" / "cloudinary-secret.yaml").read_text())
    with pytest.raises(ep.ConfigError, match="placeholder"):
        ep.checked_environment({"GATEWAY_STORAGE": "cloudinary", **secret["stringData"]})


def _run(env: dict[str, str], *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CLOUDINARY_URL", "GATEWAY_STORAGE", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_entrypoint_exits_78_on_a_placeholder() -> None:
    proc = _run({"CLOUDINARY_URL": "cloudinary://API_KEY:API_SECRET@CLOUD_NAME"}, "--check-only")
    assert proc.returncode == ep.EX_CONFIG == 78
    assert "refusing to start" in proc.stderr and "placeholder" in proc.stderr


def test_entrypoint_check_only_passes_good_settings() -> None:
    proc = _run({"CLOUDINARY_URL": GOOD_URL}, "--check-only")
    assert proc.returncode == 0, proc.stderr


def test_entrypoint_execs_the_gateway_with_its_arguments(tmp_path: Path) -> None:
    """After the checks, the entrypoint becomes `python -m gateway ARGS` with the checked environment (a stand-in
    `gateway` package in the working directory reports what it got)."""
    fake = tmp_path / "gateway"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'url': os.environ.get('CLOUDINARY_URL', 'unset')}))\n"
    )
    proc = _run({"CLOUDINARY_URL": ""}, "--port", "5051", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"argv": ["--port", "5051"], "url": "unset"}  # empty = local storage
    proc = _run({"CLOUDINARY_URL": GOOD_URL}, cwd=tmp_path)
    assert json.loads(proc.stdout) == {"argv": [], "url": GOOD_URL}
