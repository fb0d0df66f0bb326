"""The compose stack's structure (no Docker engine here): services, health checks, start
order, GPU reservations, UIs on 127.0.0.1 only, and no secret written inline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_services_volumes_and_health_checks():
    spec = compose()
    services = spec["services"]
    assert {"postgres", "prefect-server", "mlflow", "gpu-worker"} <= set(services)
    assert {"pgdata", "mlartifacts"} <= set(spec["volumes"])
    for name in ("postgres", "prefect-server", "mlflow", "gpu-worker"):
        assert "healthcheck" in services[name], name
    assert services["prefect-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["gpu-worker"]
    assert worker["depends_on"]["mlflow"]["condition"] == "service_healthy"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "postgresql" in services["mlflow"]["command"][1]
    assert "--allowed-hosts" in services["mlflow"]["command"]  # security middleware kept on


def test_only_the_uis_are_published_and_only_on_localhost():
    published = {n: s.get("ports", []) for n, s in compose()["services"].items() if s.get("ports")}
    assert set(published) == {"prefect-server", "mlflow"}
    for ports in published.values():
        assert all(str(p).startswith("127.0.0.1:") for p in ports)


def test_no_secret_is_inline_and_env_example_covers_them():
    text = (DOCKER / "compose.yaml").read_text()
    for match in re.finditer(r"(PASSWORD[^:\n]*:\s*|:)([^$\s@/]+)@", text):
        raise AssertionError(f"inline credential in compose.yaml: {match.group(0)}")
    assert "${POSTGRES_PASSWORD:?" in text
    example = (DOCKER / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=" in example
    ignored = (DOCKER.parent / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_worker_image_installs_torch_first_and_runs_a_prefect_worker():
    text = (DOCKER / "Dockerfile").read_text()
    assert text.index('pip install "torch') < text.index("pip install -e")
    assert "nvidia/cuda" in text and "ARG VARIANT" in text
    assert '"prefect", "worker", "start"' in text


def _compose_config(env_file: Path | None) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: `apt-get install docker-compose` (.ci/run does)"
    cmd = [exe, "-f", str(DOCKER / "compose.yaml")]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([*cmd, "config", "-q"], capture_output=True, text=True, env=env)


def test_compose_file_validates_with_docker_compose(tmp_path):
    """Debian's docker-compose checks the schema offline (no engine needed)."""
    example = tmp_path / "example.env"
    example.write_text((DOCKER / ".env.example").read_text())
    done = _compose_config(example)
    assert done.returncode == 0, done.stderr
    missing = _compose_config(None)  # no .env: the required password must stop it
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr
