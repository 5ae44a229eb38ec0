"""The deployment files under configs/deploy/ are valid and agree with the code, offline.

* Kubernetes: every manifest validates against the bundled schemas of `kubernetes-validate`
  (strict: an unknown field is an error); each region's node config (its ConfigMap) loads with
  the real config loader, and the StatefulSet around it agrees with it (port, data volume,
  secret files, probes on /readyz and /healthz, a grace period above the drain deadline), the
  regions list each other as peers, and the PodDisruptionBudget covers every region's pod.
* The Dockerfile: a build stage that runs configs/deploy/install.sh (the same script the wheel
  test runs, since no container engine is available to build the image), a runtime stage as a
  non-root user with a HEALTHCHECK on /healthz.
* The systemd unit: runs `meridian node`, as its own user, SIGTERM with a stop timeout above the
  drain deadline.
"""

from __future__ import annotations

import configparser
import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from meridian.node.config import DEFAULT_DRAIN_DEADLINE_S, load_config
from meridian.node.drain import FLUSH_MAX_S

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "configs" / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.32"  # the oldest release the manifests promise to work with
REGIONS = ["ap", "eu", "us"]
GRACE_MARGIN_S = 5  # what the grace period keeps above the drain deadline and its flush
SECRET_VALUES = {"cluster-secret": "s" * 32, "admin-token": "t" * 32}


def manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, doc) for p in sorted(KUBERNETES.glob("*.yaml")) for doc in manifests(p)]


def region_objects(region: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in manifests(KUBERNETES / f"region-{region}.yaml")}


@pytest.mark.parametrize(
    ("name", "manifest"),
    all_manifests(),
    ids=[f"{name}:{doc['kind']}" for name, doc in all_manifests()],
)
def test_every_manifest_validates_against_the_kubernetes_schema(
    name: str, manifest: dict[str, Any]
) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    statefulset = copy.deepcopy(region_objects("eu")["StatefulSet"])
    spec = statefulset["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_every_region_is_one_region_file() -> None:
    assert sorted(p.stem.removeprefix("region-") for p in KUBERNETES.glob("region-*.yaml")) == (
        REGIONS
    )


def _load_node_config(region: str, tmp_path: Path) -> Any:
    """The region's node.toml loaded by the node's own loader, its secret files in tmp_path."""
    objects = region_objects(region)
    text = objects["ConfigMap"]["data"]["node.toml"]
    secret_dir = _container(objects)["volumeMounts"]
    mount = next(m for m in secret_dir if m["name"] == "secrets")["mountPath"]
    for name, value in SECRET_VALUES.items():
        (tmp_path / name).write_text(value)
    text = text.replace(f"{mount}/", f"{tmp_path}/")
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_config(path, environ={})


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("region", REGIONS)
def test_each_statefulset_agrees_with_its_node_config(region: str, tmp_path: Path) -> None:
    config = _load_node_config(region, tmp_path)
    objects = region_objects(region)
    statefulset, service = objects["StatefulSet"], objects["Service"]
    pod = statefulset["spec"]["template"]["spec"]
    container = _container(objects)
    assert (config.region, config.node_id) == (region, f"{region}-1")
    assert statefulset["spec"]["replicas"] == 1
    assert container["ports"][0]["containerPort"] == config.listen_port
    assert config.listen_host == "0.0.0.0"
    assert service["spec"]["ports"][0]["port"] == config.listen_port
    assert service["spec"]["selector"] == statefulset["spec"]["template"]["metadata"]["labels"]
    # The data directory is the persistent volume, not the container's own disk.
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert Path(data["mountPath"]) == config.data_dir
    assert [t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]] == ["data"]
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert container["args"] == ["node", "--config", config_mount["mountPath"]]
    # Probes: readiness turns 503 during a drain, liveness stays up until the process ends.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= config.drain_deadline_s + FLUSH_MAX_S + GRACE_MARGIN_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert config.log_format == "json"


def test_the_secret_holds_what_every_region_mounts() -> None:
    (secret,) = manifests(KUBERNETES / "secret.example.yaml")
    assert sorted(secret["stringData"]) == sorted(SECRET_VALUES)
    for region in REGIONS:
        volumes = region_objects(region)["StatefulSet"]["spec"]["template"]["spec"]["volumes"]
        mounted = next(v for v in volumes if v["name"] == "secrets")["secret"]["secretName"]
        assert mounted == secret["metadata"]["name"]


def test_the_regions_form_a_full_mesh(tmp_path: Path) -> None:
    configs = {}
    for region in REGIONS:
        (tmp_path / region).mkdir()
        configs[region] = _load_node_config(region, tmp_path / region)
    for region, config in configs.items():
        others = {c.public_url for r, c in configs.items() if r != region}
        assert set(config.peers) == others, f"{region} does not list every other region"


def test_the_disruption_budget_covers_every_region_one_at_a_time() -> None:
    (budget,) = manifests(KUBERNETES / "pdb.yaml")
    assert budget["spec"]["maxUnavailable"] == 1
    wanted = budget["spec"]["selector"]["matchLabels"]
    for region in REGIONS:
        labels = region_objects(region)["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
        assert wanted.items() <= labels.items(), f"the budget does not cover {region}"


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into stages."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    stages: list[list[str]] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_the_dockerfile_builds_with_the_tested_script_and_runs_unprivileged() -> None:
    build, run = dockerfile_stages()
    assert build[0].endswith(" AS build")
    installs = [line for line in build if line.startswith("RUN ")]
    assert installs == ["RUN sh /src/configs/deploy/install.sh /src /opt/meridian python3"]
    assert "COPY --from=build /opt/meridian /opt/meridian" in run
    (user,) = [line.split()[1] for line in run if line.startswith("USER ")]
    assert user.split(":")[0] not in ("root", "0")
    (health,) = [line for line in run if line.startswith("HEALTHCHECK ")]
    assert "http://127.0.0.1:7101/healthz" in health
    assert "EXPOSE 7101" in run
    assert 'ENTRYPOINT ["meridian"]' in run
    assert any(line.startswith("VOLUME") and "/var/lib/meridian" in line for line in run)


def test_the_systemd_unit_runs_a_node_and_outlasts_its_drain() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "meridian@.service")
    service = unit["Service"]
    assert re.fullmatch(
        r"/opt/meridian/bin/meridian node --config /etc/meridian/%i\.toml", service["ExecStart"]
    )
    assert service["User"] == "meridian"
    assert service["KillSignal"] == "SIGTERM"
    assert (
        float(service["TimeoutStopSec"]) >= DEFAULT_DRAIN_DEADLINE_S + FLUSH_MAX_S + GRACE_MARGIN_S
    )
    assert service["ReadWritePaths"] == "/var/lib/meridian"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
