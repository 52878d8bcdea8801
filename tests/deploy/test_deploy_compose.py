"""docker-compose.yml: valid against the Compose Specification's JSON schema, and what the services need.

The schema is the `compose-spec.json` vendored in the `check-jsonschema` wheel (dev extra, pinned), checked against
the SHA-256 the wheel records for it. Compose validates after interpolating ${VAR} from the environment, so the file
is interpolated first (the subset of Compose's rules it uses: ${VAR}, ${VAR:-default}, ${VAR-default},
${VAR:?error}, ${VAR?error}, $$), once with no variables set and once with the documented ones.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
_VAR = re.compile(r"\$(?:(\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>.*))?$", re.DOTALL)


class InterpolationError(ValueError):
    pass


def _interpolate_str(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        braced = _BRACED.match(m.group("braced"))
        if not braced:
            raise InterpolationError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = braced.group("name", "op", "arg")
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if op in ("-", ":-"):
            return env[name] if present else _interpolate_str(arg, env)
        if op in ("?", ":?"):
            if not present:
                raise InterpolationError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return _VAR.sub(sub, value)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate_str(node, env)
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    return node


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # PyYAML's safe loader resolves the << merge keys


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    text = vendor.joinpath("compose-spec.json").read_bytes()
    recorded = vendor.joinpath("sha256", "compose-spec.sha256").read_text().strip()
    assert hashlib.sha256(text).hexdigest() == recorded, "compose-spec.json differs from what check-jsonschema shipped"
    return yaml.safe_load(text)


def validate(doc: dict[str, Any]) -> None:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(doc)


ENVS = {
    "defaults": {},
    "documented": {
        "CLOUDINARY_URL": "cloudinary://123456789012345:s3cr3t@my-cloud",
        "GATEWAY_STORAGE": "cloudinary",
        "GATEWAY_PUBLIC_BASE_URL": "https://deepfake.example.org",
        "TRITON_SHM_SIZE": "4gb",
        "TRITON_GPU_COUNT": "all",
        "GATEWAY_TORCH_VARIANT": "cuda",
        "REGISTRY": "registry.example.com/deepfake",
        "IMAGE_TAG": "0.1.0",
    },
}


@pytest.fixture(params=sorted(ENVS))
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return interpolate(raw(), ENVS[request.param])


def test_interpolation_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert _interpolate_str("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$SET $SET", env) == "v d  d $SET v"
    with pytest.raises(InterpolationError, match="needed"):
        _interpolate_str("${EMPTY:?needed}", env)


def test_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    validate(compose)


def test_the_schema_rejects_broken_files() -> None:
    """Negative control: the same validation fails on a wrong type, an unknown key and a malformed reservation."""
    good = interpolate(raw(), {})
    broken = []
    for mutate in (
        lambda d: d["services"]["triton"].update(shm_size=["2gb"]),
        lambda d: d["services"]["gateway"].update(helthcheck={"test": ["CMD", "true"]}),
        lambda d: d["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"][0].update(
            capabilities="gpu"
        ),
    ):
        doc = copy.deepcopy(good)
        mutate(doc)
        broken.append(doc)
    for doc in broken:
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


def test_profiles_gpu_and_cpu(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {n: s["profiles"] for n, s in services.items()} == {
        "triton": ["gpu"],
        "gateway": ["gpu"],
        "triton-cpu": ["cpu"],
        "gateway-cpu": ["cpu"],
    }


def test_triton_gpu_reservation_and_cpu_profile_without(compose: dict[str, Any]) -> None:
    gpu, cpu = compose["services"]["triton"], compose["services"]["triton-cpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "--model-config-name=gpu" in gpu["command"]
    assert "deploy" not in cpu
    assert not any(a.startswith("--model-config-name") for a in cpu["command"])
    assert gpu["image"] == cpu["image"] and gpu["build"] == cpu["build"], "the CPU profile runs the same image"
    for service in (gpu, cpu):
        assert service["command"][:2] == ["tritonserver", "--model-repository=/models"]
        size = service["shm_size"].lower()
        number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", size).groups()  # type: ignore[union-attr]
        assert int(number) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[unit] >= 1 << 30, "shm too small"
        health = " ".join(service["healthcheck"]["test"])
        assert "/v2/health/ready" in health and ":8000" in health
        assert sorted(p.split(":")[-1] for p in service["ports"]) == ["8000", "8001", "8002"]


def test_gateways_wait_for_a_healthy_triton_of_their_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for gateway, triton in (("gateway", "triton"), ("gateway-cpu", "triton-cpu")):
        g = services[gateway]
        assert g["depends_on"] == {triton: {"condition": "service_healthy"}}
        assert services[triton]["profiles"] == g["profiles"]
        host = g["environment"]["GATEWAY_TRITON_GRPC_URL"].split(":")[0]
        aliases = services[triton].get("networks", {}).get("default", {}).get("aliases", [])
        assert host == triton or host in aliases
        assert "/api/v1/health" in " ".join(g["healthcheck"]["test"])
        assert g["image"] == services["gateway"]["image"]


def test_gateway_secrets_come_from_the_environment() -> None:
    """CLOUDINARY_URL is passed through from the host (empty when unset: local storage), never written here."""
    env = raw()["services"]["gateway"]["environment"]
    assert env["CLOUDINARY_URL"] == "${CLOUDINARY_URL:-}"
    assert "cloudinary://" not in COMPOSE_FILE.read_text().split("services:")[1]
    assert interpolate(env, {})["CLOUDINARY_URL"] == ""
    url = "cloudinary://123456789012345:s3cr3t@my-cloud"
    assert interpolate(env, {"CLOUDINARY_URL": url})["CLOUDINARY_URL"] == url


def test_gateway_needs_api_keys_by_default(compose: dict[str, Any]) -> None:
    """API keys unless the host says otherwise; CORS off (empty) by default."""
    for name in ("gateway", "gateway-cpu"):
        env = compose["services"][name]["environment"]
        assert env["GATEWAY_AUTH"] == "keys" and env["GATEWAY_CORS_ORIGINS"] == ""
    assert interpolate(raw()["services"]["gateway"]["environment"], {"GATEWAY_AUTH": "open"})["GATEWAY_AUTH"] == "open"


def test_volumes_for_local_storage(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name in ("gateway", "gateway-cpu"):
        g = compose["services"][name]
        mounts = dict(v.split(":", 1) for v in g["volumes"])
        assert mounts.get("gateway-data") == "/data"
        assert g["read_only"] is True and "/tmp" in g["tmpfs"]
    used = {v.split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert used == declared


def test_builds_use_the_repository_dockerfiles_and_k8s_image_names(compose: dict[str, Any]) -> None:
    base = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text())
    k8s_images = {i["name"]: i["newTag"] for i in base["images"]}
    for name in ("triton", "gateway"):
        service = compose["services"][name]
        assert service["build"]["context"] == "."
        assert (REPO / service["build"]["dockerfile"]).is_file()
        image, tag = service["image"].rsplit(":", 1)
        assert image.rsplit("/", 1)[-1] in k8s_images
        assert tag == k8s_images[image.rsplit("/", 1)[-1]]
        assert tag != "latest"
