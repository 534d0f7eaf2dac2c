"""Settings for the ticker dashboard, read from the environment (12-factor).

Every value has a safe default that gives the *embedded* mode: SQLite, the in-memory
channel layer and the feed running inside the server process, so one command on a fresh
machine serves a live board. ``CHANNEL_LAYER_URL=redis://…`` switches to the scaled mode:
the Redis channel layer and a separate ``manage.py runfeed`` process.
"""

import os
import secrets
import socket
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TICKER_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    """Read a yes/no setting: 1/true/yes/on are true, anything else false."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated setting."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _local_secret_key() -> str:
    """A per-checkout random key kept out of the repository (under var/), made on first use."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _local_secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "ticker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The feed writes candles while the admin saves symbols: wait for the lock, don't fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
    # A file, not Django's shared in-memory database: tests run the feed's writes in threads.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))

# Scaled mode: the Redis channel layer. redis-py 8 gives every connection a 5 s socket
# timeout (which kills the layer's blocking receive) and caps a pool at 100 connections
# (channels_redis#422), so the host is given as a dict that lifts both.
CHANNEL_LAYER_URL = os.environ.get("CHANNEL_LAYER_URL", "")
CHANNEL_LAYER_PREFIX = os.environ.get("CHANNEL_LAYER_PREFIX", "ticker")  # also the quote store's key prefix
if CHANNEL_LAYER_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": CHANNEL_LAYER_URL, "socket_timeout": None, "max_connections": 10_000}
                ],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The ticker itself.
TICKER_EMBEDDED_FEED = env_bool("TICKER_EMBEDDED_FEED", not CHANNEL_LAYER_URL)
TICKER_NODE = os.environ.get("TICKER_NODE") or f"{socket.gethostname()}:{os.getpid()}"
TICKER_FEED_RATE = float(os.environ.get("TICKER_FEED_RATE", "50"))
TICKER_FEED_BATCH_MS = int(os.environ.get("TICKER_FEED_BATCH_MS", "100"))
TICKER_FEED_SEED = os.environ.get("TICKER_FEED_SEED")
TICKER_SERVE_STATIC = env_bool("TICKER_SERVE_STATIC", True)
# Under daphne, write pre-built frames straight to each connection's transport (ticker.fanout.fastpath).
TICKER_DAPHNE_FAST_PATH = env_bool("TICKER_DAPHNE_FAST_PATH", True)
# On that path, cap each connection's kernel send buffer (bytes; 0 leaves the OS's autotuning,
# which lets a stalled reader's buffer grow to megabytes). 64 KiB holds seconds of quotes.
TICKER_SOCKET_SNDBUF = int(os.environ.get("TICKER_SOCKET_SNDBUF", "65536"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "ticker": {
            "handlers": ["console"], "level": os.environ.get("TICKER_LOG_LEVEL", "INFO"), "propagate": False,
        },
    },
}
