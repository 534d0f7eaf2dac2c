"""Settings for the ticker dashboard, read from the environment (12-factor).

Every value has a safe default that gives the *embedded* mode: SQLite, the in-memory
channel layer and the feed running inside the server process, so one command on a fresh
machine serves a live board. ``CHANNEL_LAYER_URL=redis://…`` (or ``TICKER_REDIS_SENTINELS``)
switches to the scaled mode: the Redis channel layer and a separate ``manage.py runfeed`` process.
"""

import os
import secrets
import socket
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from dashboard.serve import DRAIN_SECONDS
from ticker.layer.connection import redis_target

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


# DJANGO_ENV=production: the settings refuse to start with anything unsafe (below), and the
# site is taken to be served over TLS (DJANGO_HTTPS, on by default there).
ENVIRONMENTS = ("development", "production")
ENVIRONMENT = os.environ.get("DJANGO_ENV", "development").strip().lower()
if ENVIRONMENT not in ENVIRONMENTS:
    raise ImproperlyConfigured(f"DJANGO_ENV must be one of {', '.join(ENVIRONMENTS)}, not {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"

# Values that are examples, not secrets (deploy/env.example's old values, the Dockerfile's build
# step, habits): refused in production as a secret key and as the admin's password alike.
PLACEHOLDERS = {"change-me", "changeme", "secret", "secret-key", "collectstatic-only", "django-insecure"}
MIN_SECRET_KEY_LENGTH = 50  # what Django's own deploy check asks for (security.W009)


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is an example from a template rather than something chosen or generated."""
    lowered = value.strip().lower()
    return lowered in PLACEHOLDERS or lowered.startswith("django-insecure") or "change-me" in lowered


def production_secret_key(value: str | None) -> str:
    """The secret key for production, or ImproperlyConfigured saying what is wrong with it."""
    hint = "set DJANGO_SECRET_KEY to a long random value, e.g. `openssl rand -hex 32`"
    if not value:
        raise ImproperlyConfigured(f"DJANGO_ENV=production needs DJANGO_SECRET_KEY: {hint}")
    if is_placeholder(value):
        raise ImproperlyConfigured(f"DJANGO_SECRET_KEY is a placeholder ({value[:20]!r}): {hint}")
    if len(value) < MIN_SECRET_KEY_LENGTH or len(set(value)) < 5:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is too short or too simple ({len(value)} characters, at least "
            f"{MIN_SECRET_KEY_LENGTH} of at least 5 different ones): {hint}"
        )
    return value


def refuse_placeholder_superuser_password(value: str | None) -> None:
    """ImproperlyConfigured when DJANGO_SUPERUSER_PASSWORD (setup_demo's password for the new
    ``admin``) is a placeholder; unset or empty is fine (setup_demo then generates one)."""
    if value and is_placeholder(value):
        raise ImproperlyConfigured(
            f"DJANGO_SUPERUSER_PASSWORD is a placeholder ({value[:20]!r}): set it to a password of your own, "
            "e.g. `openssl rand -base64 18`, or leave it empty for setup_demo to generate and print one"
        )


if PRODUCTION:
    SECRET_KEY = production_secret_key(os.environ.get("DJANGO_SECRET_KEY"))
    refuse_placeholder_superuser_password(os.environ.get("DJANGO_SUPERUSER_PASSWORD"))
else:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _local_secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_ENV=production refuses DJANGO_DEBUG=on: it shows settings and tracebacks")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
if PRODUCTION and "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ENV=production refuses DJANGO_ALLOWED_HOSTS=*: name the site's hosts")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Behind a proxy that terminates TLS: which request header says the client came over https,
# e.g. "HTTP_X_FORWARDED_PROTO,https" (nginx.conf.in sets X-Forwarded-Proto itself, overwriting
# whatever the client sent). Only set it when every request comes through such a proxy.
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", "")
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER is HEADER,VALUE, e.g. HTTP_X_FORWARDED_PROTO,https")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])

# Served over TLS (directly or behind that proxy): redirect http to https, secure cookies, HSTS.
HTTPS = env_bool("DJANGO_HTTPS", PRODUCTION)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    # Health checks ask each app server directly, over plain http.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    # The preload directive asks browsers to hard-code https for the domain (and every
    # subdomain) once it is submitted to their list: a decision for the domain's owner, so it
    # is opt-in, and Django's reminder about it (security.W021) is silenced until then.
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Not "daphne": its app config imports daphne's server (Twisted, its TLS stack, autobahn) into
# every Django process, a second of start-up for each management command; it only swaps in a
# runserver this project does not use (`python -m dashboard.serve` starts daphne or uvicorn).
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "axes",
    "ticker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (TICKER_SERVE_STATIC), answered before the rest runs; removed below when off.
    # Synchronous, so Django runs it in a thread under ASGI: measured on /api/quotes/, no
    # difference beyond the noise against an async variant of it (3.1–3.9 ms of CPU each).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "ticker.web.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into its 429 response.
    "axes.middleware.AxesMiddleware",
]

# Django's four standard checks on a new password: wherever Django sets one through a form (the
# admin's, `changepassword`, `createsuperuser`) and, in production, setup_demo's
# DJANGO_SUPERUSER_PASSWORD. Not too like the username or email, at least 8 characters, not one
# of the 20,000 most common, not all digits.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling (django-axes), on the admin's login and the traders' (/accounts/login/) alike,
# per address and per account (the policy: ticker/lockout.py). TICKER_LOGIN_FAILURE_LIMIT failed
# logins from one address lock that address out of both for the cool-off time (HTTP 429);
# TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT at one account, from any addresses, lock that account for
# the addresses it has never signed in from. Attempts are kept in the database; `manage.py
# axes_reset` lifts every lockout, `axes_reset_ip ADDRESS` or `axes_reset_username NAME` one.
# Behind nginx the address is the client's (the app servers run with --proxy-headers; REMOTE_ADDR).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("TICKER_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("TICKER_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = "ticker.lockout.lockout_parameters"
TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT = int(os.environ.get("TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT", "20"))
if TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT < AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured(
        "TICKER_LOGIN_ACCOUNT_FAILURE_LIMIT must be at least TICKER_LOGIN_FAILURE_LIMIT: an account's "
        "count is taken across addresses, an address's within one"
    )
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "ticker.web.accounts.locked_out"  # the 429 page, in the site's look

# Traders sign in on the site's own page (/accounts/login/, Django's LoginView; the admin keeps
# its own for staff), and both come back to the board. Both login forms authenticate through the
# backends above, so the same throttling counts and locks out the failures of either.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "board"
LOGOUT_REDIRECT_URL = "board"

# A strict Content-Security-Policy (django-csp) on every page Django renders: scripts, styles
# and fetches from this site only, no inline script or style, no framing, no plugins. The page
# may open WebSockets to its own host (ticker.web.security adds ws:// and wss:// for it).
# The one inline style allowed, by its hash: the <style> lightweight-charts adds for its
# attribution logo (its licence asks for the attribution). tests/test_http.py recomputes it from
# the vendored file, so a new version of the library cannot pass unnoticed.
CHART_ATTRIBUTION_STYLE = "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF, CHART_ATTRIBUTION_STYLE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "object-src": [NONE],
    },
}

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
    # The feed writes candles while the admin saves symbols (and django-axes records failed
    # logins, several at once): wait for the lock, don't fail. IMMEDIATE takes the write lock
    # when a transaction begins, so two of them never deadlock upgrading a read lock (which
    # SQLite reports at once as "database is locked", whatever the timeout).
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    # A file, not Django's shared in-memory database: tests run the feed's writes in threads.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles"))
# WhiteNoise serves the files the finders know of (the apps' static/ folders), indexed when
# the process starts: any other path under /static/, a traversal included, is a plain 404.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
# Under ASGI Django reads a (small) static file's iterator in a thread and says so once per
# process; the files here are a few KiB each. Without collectstatic (`make run`) there is no
# STATIC_ROOT yet, which WhiteNoise would also warn about: the finders serve the files.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
warnings.filterwarnings("ignore", message="No directory at: ")

# Scaled mode: Redis for the channel layer, the quote store and the feed lease, at one URL
# (CHANNEL_LAYER_URL) or as the master Redis Sentinel names (TICKER_REDIS_SENTINELS=HOST:PORT,…
# and TICKER_REDIS_MASTER, "ticker" by default; not both): ticker/layer/connection.py.
# redis-py 8 gives every connection a 5 s socket timeout (which kills the layer's blocking
# receive) and caps a pool at 100 connections (channels_redis#422): the layer's host lifts both.
CHANNEL_LAYER_URL = os.environ.get("CHANNEL_LAYER_URL", "")
try:
    TICKER_REDIS = redis_target(CHANNEL_LAYER_URL, os.environ.get("TICKER_REDIS_SENTINELS", ""),
                                os.environ.get("TICKER_REDIS_MASTER", ""))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
CHANNEL_LAYER_PREFIX = os.environ.get("CHANNEL_LAYER_PREFIX", "ticker")  # also the quote store's key prefix
if TICKER_REDIS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [TICKER_REDIS.layer_host(socket_timeout=None, max_connections=10_000)],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The ticker itself.
TICKER_EMBEDDED_FEED = env_bool("TICKER_EMBEDDED_FEED", TICKER_REDIS is None)
TICKER_NODE = os.environ.get("TICKER_NODE") or f"{socket.gethostname()}:{os.getpid()}"
TICKER_FEED_RATE = float(os.environ.get("TICKER_FEED_RATE", "50"))
TICKER_FEED_BATCH_MS = int(os.environ.get("TICKER_FEED_BATCH_MS", "100"))
TICKER_FEED_SEED = os.environ.get("TICKER_FEED_SEED")
# Where prices come from (docs/SOURCES.md): "simulated", or a vendor: "alpaca", "coinbase", "binance";
# TICKER_FEED_URL replaces the vendor's endpoint (a sandbox, a proxy); Alpaca's feed is "iex" (free) or
# "sip". Credentials are read from the environment by the feed itself, never from here.
TICKER_FEED_SOURCE = os.environ.get("TICKER_FEED_SOURCE", "simulated")
TICKER_FEED_URL = os.environ.get("TICKER_FEED_URL", "")
TICKER_ALPACA_FEED = os.environ.get("TICKER_ALPACA_FEED", "iex")
# How long a symbol may go without a new price before the board shows it stale (ms); 0: the source's own
# mark (15 s simulated or replay, 60 s Alpaca, 30 s Coinbase and Binance: ticker/feed/marks.py).
TICKER_STALE_MS = int(os.environ.get("TICKER_STALE_MS", "0"))
TICKER_SERVE_STATIC = env_bool("TICKER_SERVE_STATIC", True)
if not TICKER_SERVE_STATIC:  # nginx serves /static/ from collectstatic's output
    MIDDLEWARE.remove("whitenoise.middleware.WhiteNoiseMiddleware")
# Under daphne, write pre-built frames straight to each connection's transport (ticker.fanout.fastpath).
TICKER_DAPHNE_FAST_PATH = env_bool("TICKER_DAPHNE_FAST_PATH", True)
# Cap each WebSocket's kernel send buffer, under daphne and uvicorn (bytes; 0 leaves the OS's
# autotuning, which lets a stalled reader's buffer grow to megabytes): the server then notices a
# client that stopped reading within about this much (ticker/fanout/sndbuf.py).
TICKER_SOCKET_SNDBUF = int(os.environ.get("TICKER_SOCKET_SNDBUF", "65536"))
# Per-address caps on WebSockets and event streams together (ticker/web/limits.py): open at once, and new ones a second
# (with a burst); addresses in TICKER_LIMIT_EXEMPT (comma-separated networks) are not counted.
TICKER_WS_PER_ADDRESS = int(os.environ.get("TICKER_WS_PER_ADDRESS", "200"))
TICKER_WS_RATE_PER_ADDRESS = float(os.environ.get("TICKER_WS_RATE_PER_ADDRESS", "20"))
TICKER_WS_BURST_PER_ADDRESS = int(os.environ.get("TICKER_WS_BURST_PER_ADDRESS", "100"))
TICKER_LIMIT_EXEMPT = env_list("TICKER_LIMIT_EXEMPT", "")
# Long-lived connections (WebSockets and event streams) one process holds at most, every address
# counted; past it the server answers "full" (docs/PROTOCOL.md). 0: the open-files limit less 64.
TICKER_MAX_CONNECTIONS = int(os.environ.get("TICKER_MAX_CONNECTIONS", "0"))
# Seconds between keep-alive comments on an event stream (/sse/quotes/).
TICKER_SSE_KEEPALIVE = float(os.environ.get("TICKER_SSE_KEEPALIVE", "15"))
# How often the page, on a fallback (SSE or polling), tries the WebSocket again: milliseconds,
# at least 1000 (a smaller value is raised to it). The page reads it from the board's data-*.
TICKER_WS_RETRY_MS = max(1000, int(os.environ.get("TICKER_WS_RETRY_MS", "60000")))
# A client the server has had to hold (it stopped reading) this many seconds is closed (4013).
TICKER_HOLD_LIMIT = float(os.environ.get("TICKER_HOLD_LIMIT", "30"))
# The drain on SIGTERM (dashboard/drain.py): the server that `python -m dashboard.serve` started
# (it sets TICKER_SERVED_BY; empty: another runs the application, SIGTERM stays the server's), and
# how long the drain waits for its clients to go before the process stops.
TICKER_SERVED_BY = os.environ.get("TICKER_SERVED_BY", "")
TICKER_DRAIN_SECONDS = float(os.environ.get("TICKER_DRAIN_SECONDS") or DRAIN_SECONDS)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        name: {"handlers": ["console"], "level": os.environ.get("TICKER_LOG_LEVEL", "INFO"), "propagate": False}
        for name in ("ticker", "dashboard")  # dashboard: the drain on SIGTERM (dashboard/drain.py)
    },
}
