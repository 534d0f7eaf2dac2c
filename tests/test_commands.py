"""Management commands: setup_demo (seed + admin user) and runfeed's argument checks."""

import secrets
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests.helpers.procs import PYTHON, ROOT, django_env
from ticker.layer.connection import RedisTarget
from ticker.models import Symbol

pytestmark = pytest.mark.django_db


def run(*args, **kwargs) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


@pytest.mark.django_db(databases="__all__")
def test_setup_demo_seeds_symbols_and_prints_a_new_admin_password_once(monkeypatch, database):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = run("setup_demo")
    assert Symbol.objects.count() == 42 and "42 created" in first
    password = first.split("password ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    second = run("setup_demo")
    assert "0 created" in second and "exists" in second and password not in second


@pytest.mark.django_db(databases="__all__")
def test_setup_demo_takes_the_password_from_the_environment(monkeypatch, database):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "from-env-123")
    out = run("setup_demo")
    assert "from-env-123" not in out
    assert get_user_model().objects.get(username="admin").check_password("from-env-123")


@pytest.mark.django_db(databases="__all__")
def test_setup_demo_leaves_edited_symbols_alone(database):
    run("setup_demo")
    Symbol.objects.filter(ticker="AAPL").update(name="Edited", active=False)
    run("setup_demo")
    assert Symbol.objects.get(ticker="AAPL").name == "Edited"


def test_runfeed_needs_redis(settings):
    settings.TICKER_REDIS = None
    with pytest.raises(CommandError, match=r"CHANNEL_LAYER_URL=.* or TICKER_REDIS_SENTINELS="):
        call_command("runfeed")


@pytest.mark.parametrize(("body", "message"), [(None, "No such file"), ("ts,symbol\n1,A\n", "missing column")])
def test_runfeed_reports_a_bad_replay_file(settings, tmp_path, body, message):
    settings.TICKER_REDIS = RedisTarget("redis://127.0.0.1:1/0")  # never reached: the file is checked first
    path = tmp_path / "replay.csv"
    if body is not None:
        path.write_text(body)
    with pytest.raises(CommandError, match=message):
        call_command("runfeed", "--replay", str(path))


def test_setup_demo_tops_the_board_up_to_a_number_of_symbols():
    out = run("setup_demo", "--symbols", "200")
    assert Symbol.objects.count() == 200 and "200 created" in out
    assert Symbol.objects.filter(ticker="ZAAA").exists()
    assert "0 created" in run("setup_demo", "--symbols", "200")
    with pytest.raises(CommandError, match="--symbols"):
        call_command("setup_demo", "--symbols", "-1")


def production_manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py ARGS`` under DJANGO_ENV=production, on a SQLite database of its own in ``tmp_path``."""
    env = django_env(DJANGO_ENV="production", DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                     DJANGO_ALLOWED_HOSTS="ticker.example", TICKER_VAR_DIR=str(tmp_path), **env)
    return subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.integration  # manage.py in processes, under the production settings
def test_in_production_setup_demo_refuses_a_weak_admin_password_before_writing_anything(tmp_path):
    assert production_manage(tmp_path, "migrate", "-v0").returncode == 0
    for weak, reason in [("admin123", "too similar to the username"), ("short1", "too short"),
                         ("password1", "too common"), ("4815162342", "entirely numeric")]:
        done = production_manage(tmp_path, "setup_demo", DJANGO_SUPERUSER_PASSWORD=weak)
        assert done.returncode != 0, done.stdout
        assert "DJANGO_SUPERUSER_PASSWORD is too weak for production" in done.stderr and reason in done.stderr
        assert "Traceback" not in done.stderr
    count = "from ticker.models import Symbol; from django.contrib.auth.models import User; " \
            "print(Symbol.objects.count(), User.objects.count())"
    assert production_manage(tmp_path, "shell", "-v0", "-c", count).stdout.split() == ["0", "0"]
    strong = secrets.token_urlsafe(16)
    done = production_manage(tmp_path, "setup_demo", DJANGO_SUPERUSER_PASSWORD=strong)
    assert done.returncode == 0 and "created with DJANGO_SUPERUSER_PASSWORD" in done.stdout, done.stderr
    check = ("from django.contrib.auth.models import User; "
             f"print(User.objects.get(username='admin').check_password({strong!r}))")
    assert production_manage(tmp_path, "shell", "-v0", "-c", check).stdout.strip() == "True"


@pytest.mark.integration  # manage.py in processes, under the production settings
def test_in_production_setup_demo_generates_the_admin_password_when_none_is_given(tmp_path):
    assert production_manage(tmp_path, "migrate", "-v0").returncode == 0
    done = production_manage(tmp_path, "setup_demo", DJANGO_SUPERUSER_PASSWORD="")
    assert done.returncode == 0 and "admin user: created, password " in done.stdout, done.stderr


def test_runfeed_checks_its_source_before_waiting_for_the_lease(settings, monkeypatch):
    settings.TICKER_REDIS = RedisTarget("redis://127.0.0.1:1/0")  # never reached: the source is checked first
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    with pytest.raises(CommandError, match="APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
        call_command("runfeed", "--source", "alpaca")
    with pytest.raises(CommandError, match="ws:// or wss://"):
        call_command("runfeed", "--source", "coinbase", "--url", "https://example.com")
    with pytest.raises(CommandError, match="--replay and --source binance: choose one"):
        call_command("runfeed", "--source", "binance", "--replay", "x.csv")
    with pytest.raises(CommandError, match="invalid choice: 'nasdaq'"):
        call_command("runfeed", "--source", "nasdaq")
    settings.TICKER_FEED_SOURCE = "nasdaq"
    with pytest.raises(CommandError, match="unknown source 'nasdaq'"):
        call_command("runfeed")
