"""The container image and the Kubernetes manifests pass their linters (hadolint,
kubernetes-validate; both installed by ``make test`` from the package index), each
linter is shown to catch a planted mistake, and every setting they pass is one the
service reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MANIFESTS = sorted(str(p) for p in (ROOT / "deploy").glob("*.yaml"))


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = BIN / tool
    assert path.exists(), f"{tool} is not installed next to {sys.executable}: pip install -e '.[dev]'"
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_dockerfile_passes_hadolint() -> None:
    result = run("hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_planted_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text((ROOT / "Dockerfile").read_text().replace("FROM python:3.11-slim AS build", "FROM python AS build"))
    result = run("hadolint", str(bad))
    assert result.returncode != 0 and "DL3006" in result.stdout  # an untagged base image


def test_the_manifests_pass_kubernetes_validate() -> None:
    assert MANIFESTS, "no manifests in deploy/"
    result = run("kubernetes-validate", "--strict", *MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 4  # two Services, the StatefulSet, the PodDisruptionBudget


def test_kubernetes_validate_catches_a_planted_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "statefulset.yaml"
    bad.write_text((ROOT / "deploy" / "statefulset.yaml").read_text().replace("  replicas: 3", "  replica: 3"))
    result = run("kubernetes-validate", "--strict", str(bad))
    assert result.returncode != 0 and "replica" in result.stdout + result.stderr


def test_every_setting_the_image_and_manifests_pass_is_read_by_the_service() -> None:
    config = (ROOT / "src" / "hotreload" / "config.py").read_text()
    documented = (ROOT / "docs" / "configuration.md").read_text()
    passed = set()
    for path in [ROOT / "Dockerfile", *map(Path, MANIFESTS)]:
        passed |= set(re.findall(r"\bCFP_[A-Z_]+", path.read_text()))
    assert passed >= {"CFP_DATA_REPO_PATH", "CFP_RELOAD_PEERS", "CFP_DATA_POLL_SECONDS", "CFP_WRITE_ACK"}
    for name in sorted(passed):
        assert f'"{name}"' in config, f"{name} is set in the deploy files but never read"
        assert name in documented, f"{name} is set in the deploy files but not in docs/configuration.md"


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_probes_use_the_health_route_the_service_serves(probe: str) -> None:
    text = (ROOT / "deploy" / "statefulset.yaml").read_text()
    block = text.split(f"{probe}:", 1)[1].split("Probe:", 1)[0]
    assert "path: /api/health" in block and "port: http" in block


def test_several_replicas_acknowledge_writes_once_the_remote_holds_them() -> None:
    """With more than one replica taking writes, ``local`` acknowledgement lets two of them
    answer 2xx for one field (specs/writes.md): the manifests set ``remote``."""
    text = (ROOT / "deploy" / "statefulset.yaml").read_text()
    replicas = int(re.search(r"^\s*replicas: (\d+)$", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert replicas > 1 and re.search(r"- name: CFP_WRITE_ACK\n\s*value: remote\n", text)


def test_the_regression_gate_measures_servers_with_the_environment_they_are_deployed_with() -> None:
    """benchmarks/compare.py sets what the image sets outside the service (docs/deploy.md#memory)."""
    from benchmarks.compare import DEPLOYED_ENV

    dockerfile = (ROOT / "Dockerfile").read_text()
    manifest = (ROOT / "deploy" / "statefulset.yaml").read_text()
    for name, value in DEPLOYED_ENV.items():
        assert re.search(rf"\b{name}={value}\b", dockerfile), f"the Dockerfile does not set {name}={value}"
        assert re.search(rf"- name: {name}\n\s*value: \"?{value}\"?\n", manifest), f"the manifest does not set {name}"
