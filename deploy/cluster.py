"""The scaled topology on one machine, without Docker, under supervisord: ``python -m deploy.cluster start``.

``make cluster`` runs it: Redis with Sentinel (two ``redis-server`` nodes, a primary and a
replica, and three sentinels: ``deploy/sentinel.py``), ``--workers`` app servers (``python -m
dashboard.serve --proxy-headers`` on unix sockets under .run/sockets/, or on loopback ports with
``--app-port``; static files off), two ``runfeed`` processes (one active, one hot standby
waiting for the feed lease in Redis) and nginx on http://127.0.0.1:8080/ and
https://127.0.0.1:8443/ (a self-signed certificate made with ``openssl`` under .run/tls/) in
front, configured from ``deploy/nginx/nginx.conf.in`` with per-address limits (``--limit-*``).
All of them are programs of one supervisord, configured from
``deploy/supervisord/supervisord.conf.in`` (rendered into .run/supervisord.conf).

    python -m deploy.cluster start [--workers N] [--listen HOST:PORT] ...   (foreground)
    python -m deploy.cluster stop             stop a running cluster from another terminal
    python -m deploy.cluster restart          rolling restart of the app servers, one at a time
    python -m deploy.cluster render-compose   rewrite compose's nginx.conf and sentinel.conf (deploy/)
    python -m deploy.cluster tls-cert         a self-signed certificate in .run/tls/ (compose can use it)
    python -m deploy.cluster exec-web ADDRESS become the app server on ADDRESS (supervisord runs this)

``start`` migrates the database (``DATABASE_URL``; SQLite under var/ by default), runs
``setup_demo`` and ``collectstatic``, renders both configurations, starts supervisord and has it
start the programs in order, each ready before the next (the primary answers, the replica is in
sync, each feed says whether it is active or the standby, each app server's ``/healthz`` is 200,
every sentinel knows the replica and could fail over, then nginx's ``/healthz`` is 200). It
stays in the foreground until supervisord exits: Ctrl-C (or SIGTERM, or ``stop``) has
supervisord stop every program it started; supervisord starts again any that dies. ``restart``
runs ``supervisorctl restart`` on each app server in turn and waits for its ``/healthz`` through
its own address before the next. Logs live under ``.run/logs/``.

The pieces (``render_nginx``, ``write_nginx_conf``, ``nginx_argv``, ``app_server_argv``,
``app_env``) are what the tests use to build the same topology (``tests/test_cluster.py``).
"""

from __future__ import annotations

import argparse
import configparser
import functools
import http.client
import ipaddress
import os
import pwd
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from dashboard.serve import DRAIN_SECONDS
from deploy.control import SUPERVISORCTL, SUPERVISORD, Control, wait_gone
from deploy.procs import PYTHON, ROOT, http_ok, wait_until
from deploy.sentinel import COMPOSE_SENTINEL_CONF, SENTINELS, RedisSet, render_compose_sentinel

TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.in"
SUPERVISORD_TEMPLATE = ROOT / "deploy" / "supervisord" / "supervisord.conf.in"
COMPOSE_CONF = ROOT / "deploy" / "nginx" / "compose.conf"
RUN_DIR = ROOT / ".run"

# How nginx treats an app server that refused a connection (nginx.conf.in explains the trap).
# Here (unix sockets, loopback) a dead server refuses at once, so it is never taken out: each
# new connection that picks it falls over to the next server in microseconds. Across a network
# (compose) a stopped container's address may not answer at all: skip it for a while.
LOCAL_UPSTREAM_PARAMS = "max_fails=0"
COMPOSE_UPSTREAM_PARAMS = "max_fails=1 fail_timeout=2s"
READY_TIMEOUT = 30.0
DEFAULT_REDIS = RedisSet((6380, 6381), (26380, 26381, 26382))
# supervisord stops every program (the app servers' drain included) before it exits.
STOP_TIMEOUT = 90.0
# How much longer than an app server's drain deadline (dashboard.serve.DRAIN_SECONDS, or
# TICKER_DRAIN_SECONDS) supervisord waits before it SIGKILLs one it asked to stop.
DRAIN_MARGIN = 5.0

# nginx's per-address limits in a deployment (compose, `make cluster`): generous for people,
# a wall for one machine's flood. A page holds one WebSocket and asks for a handful of pages a
# minute; many people behind one NAT share an address, so a site whose visitors come through
# a few large NATs raises them. 0 turns a limit off (the tests and benchmarks do for their
# thousands of loopback clients, or set their own numbers).
DEFAULT_WS_PER_IP = 200
DEFAULT_REQ_PER_SECOND = 20
DEFAULT_REQ_BURST = 100


@dataclass(frozen=True)
class Limits:
    """Per-address caps nginx enforces: WebSockets open at once, HTTP requests a second (and burst)."""

    ws_per_ip: int = DEFAULT_WS_PER_IP
    req_per_second: int = DEFAULT_REQ_PER_SECOND
    req_burst: int = DEFAULT_REQ_BURST


NO_LIMITS = Limits(0, 0, 0)


@dataclass(frozen=True)
class TLS:
    """An https listener: ``listen`` (``host:port`` or a port) with this certificate chain and key."""

    listen: str
    certificate: str | Path
    key: str | Path


# ---------------------------------------------------------------------------------------------
# nginx


def render_nginx(
    upstreams: Sequence[str],
    *,
    listen: str,
    static_root: str | Path,
    pid: str | Path,
    error_log: str | Path,
    access_log: str | Path,
    temp_dir: str | Path | None = None,
    upstream_params: str = LOCAL_UPSTREAM_PARAMS,
    user: str | None = None,
    server_name: str = "_",
    worker_processes: str = "auto",
    worker_connections: int = 4096,
    worker_rlimit_nofile: int = 8192,
    mime_types: str = "/etc/nginx/mime.types",
    limits: Limits = NO_LIMITS,
    tls: TLS | None = None,
) -> str:
    """The nginx configuration for app servers at ``upstreams`` (``host:port`` each), with
    ``limits`` per client address and, with ``tls``, an https listener beside ``listen``."""
    if not upstreams:
        raise ValueError("at least one upstream server")
    if min(limits.ws_per_ip, limits.req_per_second, limits.req_burst) < 0:
        raise ValueError("limits are counts: 0 (off) or more")
    temp_paths = ""
    if temp_dir is not None:
        temp_paths = "".join(
            f"    {kind}_temp_path {Path(temp_dir) / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    values = {
        "user": f"user {user};\n" if user else "",
        "worker_processes": worker_processes,
        "pid": str(pid),
        "error_log": str(error_log),
        "worker_rlimit_nofile": str(worker_rlimit_nofile),
        "worker_connections": str(worker_connections),
        "mime_types": mime_types,
        "access_log": str(access_log),
        "temp_paths": temp_paths.rstrip("\n"),
        "upstream_servers": "\n".join(
            f"        server {addr} {upstream_params};" for addr in upstreams
        ),
        "listen": listen,
        "server_name": server_name,
        "static_root": str(static_root).rstrip("/"),
        "tls": render_tls(tls),
        "limit_req_rate": str(limits.req_per_second or 1),
        "limit_conn": f"            limit_conn ws_per_ip {limits.ws_per_ip};" if limits.ws_per_ip else "",
        "limit_req": (
            f"            limit_req zone=http_per_ip burst={limits.req_burst} nodelay;" if limits.req_per_second else ""
        ),
    }
    return fill(TEMPLATE, values)


def render_tls(tls: TLS | None) -> str:
    """The server block's https lines: TLS 1.2 and 1.3 only, Mozilla's "intermediate" ciphers
    (nginx's defaults for these protocols), sessions resumed from a shared cache."""
    if tls is None:
        return ""
    lines = [
        f"listen {tls.listen} ssl;",
        f"ssl_certificate {tls.certificate};",
        f"ssl_certificate_key {tls.key};",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_prefer_server_ciphers off;",
        "ssl_session_cache shared:tls:10m;",
        "ssl_session_timeout 1d;",
        "ssl_session_tickets off;",
    ]
    return "\n".join(f"        {line}" for line in lines)


def make_self_signed_certificate(
    directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> tuple[Path, Path]:
    """A self-signed certificate for ``hosts``, for local use only, made with ``openssl``:
    ``(fullchain.pem, privkey.pem)`` in ``directory`` (the names certbot gives a real one),
    kept when already there. A real site uses a certificate from a CA (docs/DEPLOYMENT.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    if cert.exists() and key.exists():
        return cert, key
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("openssl is not installed: apt-get install openssl")
    names = ",".join(f"IP:{host}" if is_ip(host) else f"DNS:{host}" for host in hosts)
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "90", "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={names}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    key.chmod(0o600)
    return cert, key


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


COMPOSE_TLS_DIR = "/etc/nginx/tls"


def render_compose_nginx(
    upstreams: Sequence[str] = ("web:8000",), temp_dir: Path | None = None, tls_dir: str | Path = COMPOSE_TLS_DIR
) -> str:
    """The configuration docker-compose.yml mounts into the nginx image: logs to the container's
    output, static files from the ``static`` volume, the ``web`` service's replicas upstream
    (Docker's DNS answers the service name with every replica's address; nginx resolves it when
    it starts), http on 80 and https on 443 with ``fullchain.pem`` and ``privkey.pem`` from
    ``tls_dir`` (a volume: docs/DEPLOYMENT.md), the default per-address limits. The image's own
    temp paths, unless ``temp_dir`` (for ``nginx -t`` elsewhere)."""
    generated = (
        f"# Generated from {TEMPLATE.relative_to(ROOT)} by `python -m deploy.cluster render-compose`:\n"
        "# edit the template, not this file.\n"
    )
    return generated + render_nginx(
        upstreams,
        listen="80",
        static_root="/srv/static",
        pid="/var/run/nginx.pid",
        error_log="/dev/stderr",
        access_log="/dev/stdout",
        worker_connections=16384,
        worker_rlimit_nofile=65536,
        temp_dir=temp_dir,
        upstream_params=COMPOSE_UPSTREAM_PARAMS,
        limits=Limits(),
        tls=TLS("443", f"{tls_dir}/fullchain.pem", f"{tls_dir}/privkey.pem"),
    )


def local_nginx_user() -> str | None:
    """As root, nginx would run its workers as ``nobody``, who cannot read a private checkout
    or test directory: keep them as the user who started it. Otherwise no ``user`` line."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


def write_nginx_conf(
    prefix: Path,
    *,
    listen: str,
    upstreams: Sequence[str],
    static_root: Path,
    log_dir: Path,
    worker_connections: int = 4096,
    worker_rlimit_nofile: int = 8192,
    limits: Limits = NO_LIMITS,
    tls: TLS | None = None,
) -> Path:
    """Render the config for an unprivileged nginx whose files all live under ``prefix``
    (temp paths, pid) and ``log_dir`` (error and access logs). Returns the config's path.
    Each proxied WebSocket takes two of an nginx worker's ``worker_connections``. No
    per-address ``limits`` unless given (loopback benchmarks open thousands of connections)."""
    prefix.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx(
            upstreams,
            listen=listen,
            static_root=static_root,
            pid=prefix / "nginx.pid",
            error_log=log_dir / "nginx-error.log",
            access_log=log_dir / "nginx-access.log",
            temp_dir=prefix / "temp",
            user=local_nginx_user(),
            worker_connections=worker_connections,
            worker_rlimit_nofile=worker_rlimit_nofile,
            limits=limits,
            tls=tls,
        )
    )
    return conf


def find_nginx() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if exe is None:
        raise RuntimeError("nginx is not installed: `make cluster` installs Debian's nginx (as root)")
    return exe


def nginx_argv(prefix: Path, conf: Path, *, test: bool = False) -> list[str]:
    """nginx in the foreground (the pid we start is the master's), or ``nginx -t`` on ``conf``."""
    argv = [find_nginx(), "-p", f"{prefix}/", "-c", str(conf)]
    return [*argv, "-t", "-q"] if test else [*argv, "-g", "daemon off;"]


# ---------------------------------------------------------------------------------------------
# The other processes


def app_server_argv(address: str) -> list[str]:
    """One app server behind nginx on ``address`` (``unix:/path`` or ``host:port``).
    ``dashboard.serve`` picks daphne or uvicorn (ASGI_SERVER) and their flags;
    ``--proxy-headers`` because nginx sets X-Forwarded-For."""
    argv = [PYTHON, "-m", "dashboard.serve", "--proxy-headers"]
    if address.startswith("unix:"):
        return [*argv, "--unix-socket", address.removeprefix("unix:")]
    host, port = split_listen(address)
    return [*argv, "--host", host, "--port", str(port)]


def app_env(base: dict[str, str], node: str, limits: Limits | None = None) -> dict[str, str]:
    """The environment of one app server: named ``node`` (in ``hello`` and /internal/status), no
    static files (nginx serves them), never the embedded feed (runfeed publishes through Redis),
    X-Forwarded-Proto trusted (only nginx reaches it, and nginx always sets that header), and the
    app's own per-address caps off where nginx's are (``limits`` with no WebSocket cap: a load
    test from one address)."""
    env = {"DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https", **base,
           "TICKER_NODE": node, "TICKER_SERVE_STATIC": "0", "TICKER_EMBEDDED_FEED": "0"}
    if limits is not None and not limits.ws_per_ip:
        env.update(TICKER_WS_PER_ADDRESS="0", TICKER_WS_RATE_PER_ADDRESS="0")
    return env


def feed_argv() -> list[str]:
    return [PYTHON, "manage.py", "runfeed"]


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def prepare(env: dict[str, str]) -> None:
    """What every start does first: the schema, the demo symbols and admin user (setup_demo
    prints a generated password once), and collectstatic's output for nginx."""
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "setup_demo")
    collectstatic(env)


def collectstatic(env: dict[str, str]) -> None:
    manage(env, "collectstatic", "--noinput", "-v0")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def healthy(address: str, timeout: float = 2.0) -> bool:
    """``/healthz`` of the app server at ``address`` (``unix:/path`` or ``host:port``) answers 200."""
    if not address.startswith("unix:"):
        return http_ok(f"http://{address}/healthz", timeout)
    conn = _UnixHTTPConnection(address.removeprefix("unix:"), timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def port_free(host: str, port: int) -> bool:
    """Nobody listens on ``host:port`` (SO_REUSEADDR, as servers bind: TIME_WAIT is no obstacle)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise this process's soft ``ulimit -n`` towards ``wanted`` (at most the hard limit); the
    children inherit it. Every WebSocket is a file descriptor in its app server and two in nginx."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < 4096:
        say(f"warning: ulimit -n is {soft}: each app server holds at most that many connections")
    return soft


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


# ---------------------------------------------------------------------------------------------
# supervisord's configuration

# The supervisord expansions the programs use; any other ``%`` is escaped (``%%``).
EXPANSIONS = ("%(process_num)s", "%(program_name)s")
WEB_NODE = "%(program_name)s_%(process_num)s"


def conf_value(text: str) -> str:
    """``text`` as a supervisord value, its own expansions (``EXPANSIONS``) kept."""
    escaped = text.replace("%", "%%")
    for expansion in EXPANSIONS:
        escaped = escaped.replace(expansion.replace("%", "%%"), expansion)
    return escaped


def conf_environment(env: dict[str, str]) -> str:
    """An ``environment=`` value: ``KEY="value",…``."""
    for key, value in env.items():
        if '"' in value or "\n" in value:
            raise ValueError(f"{key}: a value for supervisord's environment= may hold no quote or newline")
    return ",".join(f'{key}="{conf_value(value)}"' for key, value in env.items())


def fill(template: Path, values: dict[str, str]) -> str:
    """``template`` with each ``{{ name }}`` replaced by its value; every field must be given."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("{{ " + name + " }}", value)
    if "{{" in text:
        raise ValueError(f"unfilled field in {template}: {text[text.index('{{'):][:40]}")
    return text


def drop_section(text: str, header: str) -> str:
    """``text`` without the section ``header`` (up to the blank line that ends it)."""
    start = text.index(header)
    return text[:start] + text[text.index("\n\n", start) + 2:]


def drain_wait(env: dict[str, str]) -> int:
    """Seconds supervisord gives an app server between SIGTERM and SIGKILL: its drain deadline
    (``TICKER_DRAIN_SECONDS``) and a margin."""
    text = env.get("TICKER_DRAIN_SECONDS") or str(DRAIN_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"TICKER_DRAIN_SECONDS={text!r}: seconds expected") from None
    return int(max(seconds, 0.0) + DRAIN_MARGIN + 0.999)


def web_addresses(conf: Path) -> dict[str, str]:
    """The app servers of a rendered configuration, by process name (``web_1``), and the
    address each one listens on (the last word of ``[program:web]``'s command)."""
    parser = configparser.RawConfigParser()
    if not parser.read(conf):
        raise RuntimeError(f"{conf}: no such configuration")
    web = parser["program:web"]
    first, count = int(web["numprocs_start"]), int(web["numprocs"])
    address = shlex.split(web["command"])[-1]
    return {f"web_{n}": address.replace("%(process_num)s", str(n)).replace("%%", "%")
            for n in range(first, first + count)}


def exec_web(address: str) -> None:
    """Become the app server on ``address``: what supervisord runs for each ``web`` process.
    A socket file a killed server left behind is removed first (daphne would not listen on
    it); exec, so that the pid supervisord knows is the server's."""
    if address.startswith("unix:"):
        path = Path(address.removeprefix("unix:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    argv = app_server_argv(address)
    os.execv(argv[0], argv)


def control(run_dir: Path) -> Control:
    """The cluster's supervisord in ``run_dir``: its socket (mode 0700) and configuration."""
    return Control(run_dir / "supervisord.sock", run_dir / "supervisord.conf")


# ---------------------------------------------------------------------------------------------
# The runner


class Stopping(Exception):
    """Ctrl-C or SIGTERM arrived while waiting for something."""


class Cluster:
    """Renders one local cluster's configurations, runs its supervisord, starts the programs in
    order, and stops supervisord (which stops them) when told to."""

    def __init__(
        self,
        run_dir: Path = RUN_DIR,
        *,
        workers: int = 2,
        listen: str = "127.0.0.1:8080",
        app_port: int = 0,
        redis: RedisSet = DEFAULT_REDIS,
        feeds: int = 2,
        static_root: Path | None = None,
        env: dict[str, str] | None = None,
        https_listen: str = "127.0.0.1:8443",
        limits: Limits = Limits(),
    ) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        if feeds < 1:
            raise ValueError("--feeds must be at least 1")
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.listen = listen
        self.url = "http://{}:{}".format(*split_listen(listen))
        # https beside http, with a self-signed certificate made on the first start (.run/tls/).
        self.https_listen = https_listen
        self.https_url = "https://{}:{}".format(*split_listen(https_listen)) if https_listen else ""
        self.tls_dir = run_dir / "tls"
        self.limits = limits
        base = dict(os.environ if env is None else env)
        self.static_root = static_root or Path(base.get("DJANGO_STATIC_ROOT") or ROOT / "staticfiles")
        # A Redis named in the environment (a URL or sentinels) is used as it is; else this
        # cluster runs its own, the app told where its sentinels are.
        self.external_redis = base.get("CHANNEL_LAYER_URL") or base.get("TICKER_REDIS_SENTINELS") or ""
        self.redis = redis
        base.update({
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_STATIC_ROOT": str(self.static_root),
        })
        if not self.external_redis:
            base.update(self.redis.app_env())
        self.env = base
        self.feeds = [f"feed_{i}" for i in range(1, feeds + 1)]
        # Unix sockets by default (nothing else on the machine can hold them); with --app-port,
        # process N listens on port N, from that one.
        self.socket_dir = run_dir / "sockets"
        self.app_port = app_port
        self.web_first = app_port or 1
        self.webs = {f"web_{n}": self.web_address(str(n)) for n in range(self.web_first, self.web_first + workers)}
        self.nginx_prefix = run_dir / "nginx"
        self.nginx_conf = self.nginx_prefix / "nginx.conf"
        self.control = control(run_dir)
        self.supervisord: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def web_address(self, num: str) -> str:
        return f"127.0.0.1:{num}" if self.app_port else f"unix:{self.socket_dir / f'web_{num}.sock'}"

    def render_supervisord(self, minfds: int) -> str:
        """The supervisord configuration of this cluster, its programs started by the runner."""
        web_env = {key: value for key, value in app_env(self.env, WEB_NODE, self.limits).items()
                   if self.env.get(key) != value}
        text = fill(SUPERVISORD_TEMPLATE, {
            "socket": conf_value(str(self.control.socket)),
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            "pidfile": conf_value(str(self.run_dir / "supervisord.pid")),
            "log_dir": conf_value(str(self.log_dir)),
            "minfds": str(minfds),
            "autostart": "false",
            "root": conf_value(str(ROOT)),
            "redis_command": conf_value(shlex.join(self.redis.node_argv("%(process_num)s"))),
            "redis_nodes": str(len(self.redis.nodes)),
            "redis_environment": conf_environment(self.redis.node_env()),
            "sentinel_command": conf_value(shlex.join(
                self.redis.sentinel_argv(str(self.run_dir / "sentinel_%(process_num)s.conf")))),
            "sentinels": str(len(self.redis.sentinels)),
            "run_dir": conf_value(str(self.run_dir)),
            "feed_command": conf_value(shlex.join(feed_argv())),
            "feeds": str(len(self.feeds)),
            "web_command": conf_value(shlex.join(
                [PYTHON, "-m", "deploy.cluster", "exec-web", self.web_address("%(process_num)s")])),
            "workers": str(len(self.webs)),
            "web_first": str(self.web_first),
            "web_environment": conf_environment(web_env),
            "web_stopwaitsecs": str(drain_wait(self.env)),
            "nginx_command": conf_value(shlex.join(nginx_argv(self.nginx_prefix, self.nginx_conf))),
        })
        if self.external_redis:
            text = drop_section(drop_section(text, "[program:redis]"), "[program:sentinel]")
        return text

    # Start

    def preflight(self) -> None:
        running = self.control.pid()
        if running:
            raise RuntimeError(f"a cluster is already running (supervisord pid {running}): `make cluster-stop` first")
        addresses = {"nginx": self.listen, "nginx (https)": self.https_listen}
        if not self.external_redis:
            addresses.update({name: f"{self.redis.host}:{port}" for name, port in self.redis_ports().items()})
        if self.app_port:
            addresses.update(self.webs)
        for name, address in addresses.items():
            if address and not port_free(*split_listen(address)):
                raise RuntimeError(f"{name}: {address} is in use (another cluster or server?)")
        find_nginx()

    def start(self) -> None:
        began = time.monotonic()
        self.preflight()
        minfds = raise_open_files_limit()
        say(f"migrating the database, collecting static files into {self.static_root}")
        prepare(self.env)
        tls = None
        if self.https_listen:
            host = split_listen(self.https_listen)[0]
            cert, key = make_self_signed_certificate(self.tls_dir, ("localhost", "127.0.0.1", "::1", host))
            tls = TLS(self.https_listen, cert, key)
        write_nginx_conf(self.nginx_prefix, listen=self.listen, upstreams=list(self.webs.values()),
                         static_root=self.static_root, log_dir=self.log_dir, limits=self.limits, tls=tls)
        subprocess.run(nginx_argv(self.nginx_prefix, self.nginx_conf, test=True), check=True)
        self.control.conf.write_text(self.render_supervisord(minfds))
        self.redis.write_sentinel_confs(self.run_dir)
        # A session of its own: Ctrl-C in the terminal reaches the runner only, which then has
        # supervisord stop the programs in order. Its log goes to the runner's output.
        self.supervisord = subprocess.Popen([*SUPERVISORD, "-c", str(self.control.conf)], cwd=ROOT, env=self.env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        supervisord = self.supervisord
        self.wait_ready("supervisord", lambda: self.control.pid() == supervisord.pid)
        if not self.external_redis:
            self.start_redis()
        for feed in self.feeds:
            offset = self.log_size(feed)
            self.start_program(f"feed:{feed}", functools.partial(self.has_role, feed, offset))
        for name in self.webs:  # in parallel: each takes a second or two to import Django
            self.control.start(f"web:{name}", wait=False)
        for name, address in self.webs.items():
            self.wait_ready(name, functools.partial(healthy, address))
        if not self.external_redis:  # started with Redis, ready by now: hellos come every 2 s
            for name, port in self.redis.sentinel_names().items():
                self.wait_ready(name, functools.partial(self.redis.sentinel_ready, port))
        self.start_program("nginx:nginx", lambda: http_ok(self.url + "/healthz"))
        self.summary(time.monotonic() - began)

    def start_redis(self) -> None:
        """The primary (answering as the master), then the replica (in sync with it: the sentinels
        learn of it from the primary), then the sentinels, whose readiness is waited for later."""
        (first, primary), *replicas = self.redis.node_names().items()
        self.start_program(f"redis:{first}", lambda: self.redis.role(primary) == "master")
        for name, port in replicas:
            self.start_program(f"redis:{name}", functools.partial(self.redis.synced, port))
        for name in self.redis.sentinel_names():
            self.control.start(f"sentinel:{name}", wait=False)

    def redis_ports(self) -> dict[str, int]:
        """Every Redis process of this cluster by name: the nodes, then the sentinels."""
        return {**self.redis.node_names(), **self.redis.sentinel_names()}

    def start_program(self, spec: str, ready: Callable[[], bool]) -> None:
        self.control.start(spec, wait=False)
        self.wait_ready(spec.partition(":")[2], ready)

    def wait_ready(self, name: str, ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``ready()``; fail with its log if ``name`` exits meanwhile or never gets there."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stopping:
                raise Stopping
            if self.supervisord is None or self.supervisord.poll() is not None:
                raise RuntimeError(f"supervisord exited; see {self.log_dir / 'supervisord.log'}")
            proc = self.control.processes().get(name)
            if proc is not None and proc.state in ("BACKOFF", "EXITED", "FATAL"):
                raise RuntimeError(f"{name} exited:\n{self.output(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {self.log(name)}")
            time.sleep(0.1)

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_size(self, name: str) -> int:
        return self.log(name).stat().st_size if self.log(name).exists() else 0

    def output(self, name: str, offset: int = 0) -> str:
        """What ``name`` logged from ``offset`` on."""
        if not self.log(name).exists():
            return ""
        with open(self.log(name), "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def feed_role(self, feed: str, offset: int = 0) -> str:
        """Whether a feed said it is active or a standby (the lease decides) since ``offset``."""
        return feed_role(self.output(feed, offset))

    def has_role(self, feed: str, offset: int) -> bool:
        return self.feed_role(feed, offset) != "?"

    def summary(self, took: float) -> None:
        say(f"up in {took:.1f} s: {self.url}/   admin: {self.url}/admin/   health: {self.url}/healthz")
        if self.https_url:
            say(f"  https: {self.https_url}/ (self-signed: {self.tls_dir / 'fullchain.pem'})")
        say("  per address: " + (f"{self.limits.ws_per_ip} WebSockets, " if self.limits.ws_per_ip else "")
            + (f"{self.limits.req_per_second} requests/s (burst {self.limits.req_burst})"
               if self.limits.req_per_second else "no request limit"))
        pids = {name: proc.pid for name, proc in self.control.processes().items()}
        rows = [] if self.external_redis else [
            (name, f"{self.redis.host}:{port}") for name, port in self.redis_ports().items()]
        rows += [(feed, self.feed_role(feed)) for feed in self.feeds]
        rows += [*self.webs.items(), ("nginx", self.listen)]
        for name, where in rows:
            say(f"  {name:<6} {where:<16} pid {pids.get(name)}")
        if self.external_redis:
            say(f"  redis: {self.external_redis} (not started here)")
        ctl = shlex.join([Path(SUPERVISORCTL[0]).parent.joinpath("supervisorctl").as_posix(), "-c",
                          str(self.control.conf)])
        say(f"supervisord pid {self.supervisord.pid if self.supervisord else '?'}: `{ctl} status`")
        say(f"logs: {self.log_dir}/   stop: Ctrl-C or `make cluster-stop`   rolling restart: `make cluster-restart`")

    # Run

    def serve(self) -> int:
        """Start, then wait for supervisord to exit; always stop it. Exit status."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_stop)
        status = 0
        try:
            self.start()
            assert self.supervisord is not None
            code = self.supervisord.wait()  # until `make cluster-stop`, a signal here, or its death
            if code != 0:
                say(f"supervisord exited with code {code}")
                status = 1
        except Stopping:
            pass
        except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError, xmlrpc.client.Error) as exc:
            if not self.stopping:
                say(f"error: {exc}")
                status = 1
        finally:
            self.shutdown()
        return status

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            say(f"{signal.Signals(signum).name}: stopping")
        self.stopping = True
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.terminate()

    def shutdown(self) -> None:
        """supervisord stops every program, front to back (nginx, app servers, feeds, Redis), then exits."""
        if self.supervisord is not None and self.supervisord.poll() is None:
            self.supervisord.terminate()
            try:
                self.supervisord.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                say(f"supervisord still running after {STOP_TIMEOUT:.0f} s: SIGKILL")
                self.supervisord.kill()
                self.supervisord.wait()
        say("stopped")


def feed_role(log: str) -> str:
    """What a feed's ``log`` says it is now: "active" (it holds the lease), "standby", or "?"."""
    active, standby = log.rfind(": active, epoch"), log.rfind("standby:")
    return "active" if active > standby else "standby" if standby >= 0 else "?"


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Commands for another terminal


def stop(run_dir: Path = RUN_DIR, timeout: float = STOP_TIMEOUT) -> int:
    """Stop a running cluster: SIGTERM to its supervisord (by the pid it gives on its control
    socket), which stops every program it started, then exits."""
    pid = control(run_dir).pid()
    if pid is None:
        say("no cluster running")
        return 0
    say(f"stopping the cluster (supervisord pid {pid})")
    os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        say(f"supervisord {pid} still running after {timeout:.0f} s")
        return 1
    say("stopped")
    return 0


def restart(run_dir: Path = RUN_DIR) -> int:
    """Restart the app servers one at a time with ``supervisorctl restart``, each healthy (its
    ``/healthz`` through its own address) before the next."""
    ctl = control(run_dir)
    if ctl.pid() is None:
        say("no cluster running: `make cluster` first")
        return 1
    say("rolling restart of the app servers, one at a time")
    began = time.monotonic()
    for name, address in web_addresses(ctl.conf).items():
        t0, old = time.monotonic(), ctl.pids().get(name)
        done = ctl.ctl("restart", f"web:{name}")
        if done.returncode != 0 or "ERROR" in done.stdout:
            say(f"restart failed: {name}: {(done.stdout + done.stderr).strip()}")
            return 1
        try:
            wait_until(functools.partial(healthy, address), READY_TIMEOUT, 0.1, f"{name}'s /healthz")
        except TimeoutError as exc:
            say(f"restart failed: {exc}")
            return 1
        say(f"restart: {name} pid {old} -> {ctl.pids().get(name)}, healthy in {time.monotonic() - t0:.1f} s")
    say(f"restarted every app server in {time.monotonic() - began:.1f} s")
    return 0


def ports(count: int) -> Callable[[str], tuple[int, ...]]:
    """An argument type: ``count`` comma-separated port numbers."""
    def parse(text: str) -> tuple[int, ...]:
        numbers = tuple(int(item) for item in text.split(",") if item.strip().isdigit())
        if len(numbers) != count or len(text.split(",")) != count:
            raise argparse.ArgumentTypeError(f"{count} port numbers, comma-separated: {text!r}")
        return numbers
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR,
                        help="supervisord's socket and configuration, logs, nginx files (default .run/)")
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start the cluster in the foreground; Ctrl-C stops it")
    start_cmd.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    start_cmd.add_argument("--listen", default="127.0.0.1:8080", help="nginx's address (default %(default)s)")
    start_cmd.add_argument("--app-port", type=int, default=0,
                           help="app servers on loopback ports from this one (default: unix sockets in .run/sockets/)")
    start_cmd.add_argument("--redis-ports", type=ports(2), default=DEFAULT_REDIS.nodes,
                           help="the Redis primary's and replica's ports (default 6380,6381); with "
                           "CHANNEL_LAYER_URL or TICKER_REDIS_SENTINELS set, no Redis is started")
    start_cmd.add_argument("--sentinel-ports", type=ports(SENTINELS), default=DEFAULT_REDIS.sentinels,
                           help="the three sentinels' ports (default 26380,26381,26382)")
    start_cmd.add_argument("--feeds", type=int, default=2, help="runfeed processes: 1 active + standbys")
    start_cmd.add_argument("--https-listen", default="127.0.0.1:8443",
                           help="nginx's https address, self-signed certificate (default %(default)s; '' for none)")
    start_cmd.add_argument("--limit-ws", type=int, default=DEFAULT_WS_PER_IP,
                           help="WebSockets open at once per client address (default %(default)s; 0: no limit)")
    start_cmd.add_argument("--limit-req", type=int, default=DEFAULT_REQ_PER_SECOND,
                           help="HTTP requests a second per client address (default %(default)s; 0: no limit)")
    start_cmd.add_argument("--limit-burst", type=int, default=DEFAULT_REQ_BURST,
                           help="requests served at once above that rate (default %(default)s)")
    sub.add_parser("stop", help="stop a running cluster")
    sub.add_parser("restart", help="rolling restart of the app servers")
    sub.add_parser("render-compose", help=f"rewrite {COMPOSE_CONF.relative_to(ROOT)} and "
                   f"{COMPOSE_SENTINEL_CONF.relative_to(ROOT)}")
    sub.add_parser("tls-cert", help="make a self-signed certificate for local use in RUN_DIR/tls/")
    web_cmd = sub.add_parser("exec-web", help="become the app server on ADDRESS (what supervisord runs)")
    web_cmd.add_argument("address", help="unix:/path or host:port")
    opts = parser.parse_args(argv)
    if opts.command == "start":
        try:
            cluster = Cluster(opts.run_dir, workers=opts.workers, listen=opts.listen, app_port=opts.app_port,
                              redis=RedisSet(opts.redis_ports, opts.sentinel_ports), feeds=opts.feeds,
                              https_listen=opts.https_listen,
                              limits=Limits(opts.limit_ws, opts.limit_req, opts.limit_burst))
            cluster.preflight()
        except (RuntimeError, ValueError) as exc:
            say(f"error: {exc}")
            return 1
        return cluster.serve()
    if opts.command == "stop":
        return stop(opts.run_dir)
    if opts.command == "restart":
        return restart(opts.run_dir)
    if opts.command == "exec-web":
        exec_web(opts.address)
    if opts.command == "tls-cert":
        cert, key = make_self_signed_certificate(opts.run_dir / "tls")
        say(f"certificate {cert}, key {key} (self-signed: for this machine only)")
        return 0
    COMPOSE_CONF.write_text(render_compose_nginx())
    COMPOSE_SENTINEL_CONF.write_text(render_compose_sentinel())
    say(f"wrote {COMPOSE_CONF.relative_to(ROOT)} and {COMPOSE_SENTINEL_CONF.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
