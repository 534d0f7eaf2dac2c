"""Management commands: setup_demo (seed + admin user) and runfeed's argument checks."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

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
    settings.CHANNEL_LAYER_URL = ""
    with pytest.raises(CommandError, match="CHANNEL_LAYER_URL"):
        call_command("runfeed")


@pytest.mark.parametrize(("body", "message"), [(None, "No such file"), ("ts,symbol\n1,A\n", "missing column")])
def test_runfeed_reports_a_bad_replay_file(settings, tmp_path, body, message):
    settings.CHANNEL_LAYER_URL = "redis://127.0.0.1:1/0"  # never reached: the file is checked first
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
