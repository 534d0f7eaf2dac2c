"""The settings under DJANGO_ENV=production: what they refuse, and Django's deploy check.

Each case starts a real ``manage.py`` process with the environment under test, as a server
would be started: the settings module runs once per process.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from tests.helpers.compose import compose
from tests.helpers.procs import PYTHON, ROOT, django_env

pytestmark = pytest.mark.integration  # each test runs manage.py or a server

STRONG_KEY = secrets.token_urlsafe(50)


def manage_py(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in django_env().items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "dashboard.settings", **env},
    )


def test_check_deploy_is_clean_with_production_settings_and_a_strong_key():
    done = manage_py("check", "--deploy", "--fail-level", "WARNING",
                     DJANGO_ENV="production", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS="ticker.example")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_check_deploy_warns_about_the_development_defaults():
    """The same check without the production switch finds what production turns on."""
    done = manage_py("check", "--deploy", "--fail-level", "WARNING", DJANGO_SECRET_KEY=STRONG_KEY)
    assert done.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "DJANGO_ENV=production needs DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": ""}, "DJANGO_ENV=production needs DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "change-me"}, "DJANGO_SECRET_KEY is a placeholder"),
        ({"DJANGO_SECRET_KEY": "CHANGE-ME"}, "DJANGO_SECRET_KEY is a placeholder"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + "x1y2z3" * 10}, "DJANGO_SECRET_KEY is a placeholder"),
        ({"DJANGO_SECRET_KEY": "short-but-random-8f2a"}, "DJANGO_SECRET_KEY is too short"),
        ({"DJANGO_SECRET_KEY": "ab" * 40}, "DJANGO_SECRET_KEY is too short or too simple"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_DEBUG": "1"}, "refuses DJANGO_DEBUG=on"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_ALLOWED_HOSTS": "*"}, "refuses DJANGO_ALLOWED_HOSTS=*"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_SUPERUSER_PASSWORD": "change-me"},
         "DJANGO_SUPERUSER_PASSWORD is a placeholder"),
        ({"DJANGO_SECRET_KEY": STRONG_KEY, "DJANGO_SUPERUSER_PASSWORD": " Change-Me "},
         "DJANGO_SUPERUSER_PASSWORD is a placeholder"),
    ],
    ids=["no-key", "empty-key", "change-me", "change-me-upper", "django-insecure", "short", "simple", "debug",
         "any-host", "admin-password-change-me", "admin-password-change-me-mixed"],
)
def test_production_settings_refuse_to_start(env, message):
    done = manage_py("check", DJANGO_ENV="production", **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and message in done.stderr, done.stderr[-2000:]


def test_an_unknown_environment_is_refused():
    done = manage_py("check", DJANGO_ENV="prod")
    assert done.returncode != 0 and "DJANGO_ENV must be one of development, production" in done.stderr


def test_an_account_lockout_limit_below_the_address_limit_is_refused():
    done = manage_py("check", TICKER_LOGIN_FAILURE_LIMIT="5", TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT="4")
    assert done.returncode != 0
    assert "TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT must be at least TICKER_LOGIN_FAILURE_LIMIT" in done.stderr


def test_development_still_starts_without_a_key(tmp_path):
    done = manage_py("check", TICKER_VAR_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "secret_key").exists()  # a random per-checkout key, made on first use


def test_an_empty_superuser_password_is_not_a_placeholder():
    """Unset or empty, setup_demo generates the admin's password: production starts."""
    done = manage_py("check", DJANGO_ENV="production", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_SUPERUSER_PASSWORD="")
    assert done.returncode == 0, done.stderr[-2000:]


def env_example() -> dict[str, str]:
    """deploy/env.example's settings, as compose would read them from a copy in .env."""
    lines = (ROOT / "deploy" / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_deploy_env_example_followed_literally_is_refused_by_compose():
    """Copied to .env and started as it is, the example names no password anyone could know:
    its secrets are empty, and compose refuses to start until they are filled in."""
    example = env_example()
    assert {example[k] for k in ("POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "DJANGO_SUPERUSER_PASSWORD")} == {""}
    done = compose("config", "--format", "json", **example)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD" in done.stderr or "set DJANGO_SECRET_KEY" in done.stderr, done.stderr


def test_the_compose_deployment_refuses_a_placeholder_secret_key():
    """A ``change-me`` key (what an older env.example held) passes compose's own check (the key
    is set), but the app servers it describes refuse to start with it."""
    done = compose("config", "--format", "json", POSTGRES_PASSWORD="pw", DJANGO_SECRET_KEY="change-me")
    assert done.returncode == 0, done.stderr
    web = json.loads(done.stdout)["services"]["web"]["environment"]
    assert web["DJANGO_SECRET_KEY"] == "change-me" and web["DJANGO_ENV"] == "production"
    done = manage_py("check", **{k: v for k, v in web.items() if k.startswith("DJANGO_")})
    assert done.returncode != 0 and "DJANGO_SECRET_KEY is a placeholder" in done.stderr
    strong = manage_py("check", **{**{k: v for k, v in web.items() if k.startswith("DJANGO_")},
                                   "DJANGO_SECRET_KEY": STRONG_KEY})
    assert strong.returncode == 0, strong.stderr


def test_proxy_ssl_header_comes_from_the_environment():
    code = "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)"
    done = manage_py("shell", "-v0", "-c", code, DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    assert done.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", done.stderr
    done = manage_py("shell", "-v0", "-c", code)
    assert done.stdout.strip() == "None"


@pytest.mark.parametrize(("value", "expected"), [(None, 60000), ("2000", 2000), ("10", 1000)],
                         ids=["default", "set", "below-minimum"])
def test_the_websocket_retry_interval_has_a_default_and_a_floor(value, expected):
    env = {} if value is None else {"TICKER_WS_RETRY_MS": value}
    code = "from django.conf import settings; print(settings.TICKER_WS_RETRY_MS)"
    done = manage_py("shell", "-v0", "-c", code, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(expected)]


def test_two_redis_targets_are_refused():
    done = manage_py("check", CHANNEL_LAYER_URL="redis://127.0.0.1:6379/0", TICKER_REDIS_SENTINELS="127.0.0.1:26379")
    assert done.returncode != 0 and "CHANNEL_LAYER_URL and TICKER_REDIS_SENTINELS name two Redis" in done.stderr
