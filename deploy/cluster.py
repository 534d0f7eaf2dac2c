"""The scaled topology on one machine, without Docker: ``python -m deploy.cluster start``.

``make cluster`` runs it: a ``redis-server``, ``--workers`` app servers (``python -m
dashboard.serve --proxy-headers`` on unix sockets under .run/sockets/, or on loopback ports with
``--app-port``; static files off), two ``runfeed`` processes (one active, one hot standby
waiting for the feed lease in Redis) and nginx on http://127.0.0.1:8080/ and
https://127.0.0.1:8443/ (a self-signed certificate made with ``openssl`` under .run/tls/) in
front, configured from ``deploy/nginx/nginx.conf.in`` with per-address limits (``--limit-*``).

    python -m deploy.cluster start [--workers N] [--listen HOST:PORT] ...   (foreground)
    python -m deploy.cluster stop             stop a running cluster from another terminal
    python -m deploy.cluster restart          rolling restart of the app servers, one at a time
    python -m deploy.cluster render-compose   rewrite deploy/nginx/compose.conf from the template
    python -m deploy.cluster tls-cert         a self-signed certificate in .run/tls/ (compose can use it)

``start`` migrates the database (``DATABASE_URL``; SQLite under var/ by default), runs
``setup_demo`` and ``collectstatic``, then stays in the foreground and supervises what it
started: Ctrl-C (or SIGTERM, or ``stop``) stops exactly those processes, by pid; a process that
dies is started again; SIGUSR1 (what ``restart`` sends) restarts the app servers one at a time,
each time waiting for the new one's ``/healthz`` before the next. Pids and logs live under
``.run/``.

The pieces (``render_nginx``, ``write_nginx_conf``, ``nginx_argv``, ``app_server_argv``,
``app_env``) are what the tests use to build the same topology (``tests/test_cluster.py``).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from deploy.procs import PYTHON, ROOT, http_ok, redis_argv, redis_ok

TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.in"
COMPOSE_CONF = ROOT / "deploy" / "nginx" / "compose.conf"
RUN_DIR = ROOT / ".run"

# How nginx treats an app server that refused a connection (nginx.conf.in explains the trap).
# Here (unix sockets, loopback) a dead server refuses at once, so it is never taken out: each
# new connection that picks it falls over to the next server in microseconds. Across a network
# (compose) a stopped container's address may not answer at all: skip it for a while.
LOCAL_UPSTREAM_PARAMS = "max_fails=0"
COMPOSE_UPSTREAM_PARAMS = "max_fails=1 fail_timeout=2s"
STOP_TIMEOUT = 10.0
READY_TIMEOUT = 30.0
QUICK_CRASH_SECONDS = 10.0
MAX_QUICK_CRASHES = 3

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
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("{{ " + name + " }}", value)
    if "{{" in text:
        raise ValueError(f"unfilled field in {TEMPLATE}: {text[text.index('{{'):][:40]}")
    return text


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
# Pid files: "pid start-time", so that a pid the kernel has since given to another process is
# never signalled.


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def write_pidfile(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid} {start_time(pid) or '?'}\n")


def read_pidfile(path: Path) -> int | None:
    """The pid recorded in ``path`` if that very process is still running."""
    try:
        pid_text, started = path.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while start_time(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s (for a process that is not our child)."""
    try:
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# The supervisor


class Stopping(Exception):
    """Ctrl-C or SIGTERM arrived while waiting for something."""


@dataclass
class Child:
    """One process the cluster started, and how to start it again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[], bool] | None = None
    address: str = ""
    popen: subprocess.Popen | None = None
    started: float = 0.0
    log_offset: int = 0
    quick_crashes: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Cluster:
    """Starts, watches, restarts and stops the processes of one local cluster."""

    def __init__(
        self,
        run_dir: Path = RUN_DIR,
        *,
        workers: int = 2,
        listen: str = "127.0.0.1:8080",
        app_port: int = 0,
        redis_port: int = 6380,
        feeds: int = 2,
        static_root: Path | None = None,
        env: dict[str, str] | None = None,
        https_listen: str = "127.0.0.1:8443",
        limits: Limits = Limits(),
    ) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.pid_dir = run_dir / "pids"
        self.listen = listen
        self.url = "http://{}:{}".format(*split_listen(listen))
        # https beside http, with a self-signed certificate made on the first start (.run/tls/).
        self.https_listen = https_listen
        self.https_url = "https://{}:{}".format(*split_listen(https_listen)) if https_listen else ""
        self.tls_dir = run_dir / "tls"
        self.limits = limits
        base = dict(os.environ if env is None else env)
        self.static_root = static_root or Path(base.get("DJANGO_STATIC_ROOT") or ROOT / "staticfiles")
        self.external_redis = base.get("CHANNEL_LAYER_URL", "")
        base.update({
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_STATIC_ROOT": str(self.static_root),
            "CHANNEL_LAYER_URL": self.external_redis or f"redis://127.0.0.1:{redis_port}/0",
        })
        self.env = base
        self.children: list[Child] = []
        if not self.external_redis:
            self.children.append(Child("redis", redis_argv(redis_port), base,
                                       ready=lambda: redis_ok(redis_port), address=f"127.0.0.1:{redis_port}"))
        self.feeds = [Child(f"feed{i}", feed_argv(), base) for i in range(1, feeds + 1)]
        self.children += self.feeds
        self.socket_dir = run_dir / "sockets"
        self.webs = []
        for i in range(1, workers + 1):
            # Unix sockets by default: nothing else on the machine can hold them.
            address = f"127.0.0.1:{app_port + i - 1}" if app_port else f"unix:{self.socket_dir / f'web{i}.sock'}"
            self.webs.append(Child(f"web{i}", app_server_argv(address), app_env(base, f"web{i}", self.limits),
                                   ready=lambda address=address: healthy(address), address=address))
        self.children += self.webs
        self.nginx_prefix = run_dir / "nginx"
        self.nginx_conf = self.nginx_prefix / "nginx.conf"
        self.nginx = Child("nginx", nginx_argv(self.nginx_prefix, self.nginx_conf), base,
                           ready=lambda: http_ok(self.url + "/healthz"), address=listen)
        self.children.append(self.nginx)
        self.stopping = False
        self.restart_requested = False

    # Files

    @property
    def supervisor_pidfile(self) -> Path:
        return self.run_dir / "cluster.pid"

    def pidfile(self, child: Child) -> Path:
        return self.pid_dir / f"{child.name}.pid"

    def log(self, child: Child) -> Path:
        return self.log_dir / f"{child.name}.log"

    def output(self, child: Child) -> str:
        """What ``child`` logged since it was last started."""
        with open(self.log(child), "rb") as fh:
            fh.seek(child.log_offset)
            return fh.read().decode(errors="replace")

    # Start

    def preflight(self) -> None:
        running = read_pidfile(self.supervisor_pidfile)
        if running:
            raise RuntimeError(f"a cluster is already running (pid {running}): `make cluster-stop` first")
        leftovers = [f.stem for f in self.pid_dir.glob("*.pid") if read_pidfile(f)]
        if leftovers:
            raise RuntimeError(f"processes of an earlier cluster still run ({', '.join(leftovers)}): "
                               "`make cluster-stop` first")
        for child in self.children:
            if child.address.startswith("unix:"):
                continue
            if child.address and not port_free(*split_listen(child.address)):
                raise RuntimeError(f"{child.name}: {child.address} is in use (another cluster or server?)")
        if self.https_listen and not port_free(*split_listen(self.https_listen)):
            raise RuntimeError(f"nginx: {self.https_listen} is in use (another cluster or server?)")
        find_nginx()

    def start(self) -> None:
        began = time.monotonic()
        self.preflight()
        write_pidfile(self.supervisor_pidfile, os.getpid())
        raise_open_files_limit()
        say(f"migrating the database, collecting static files into {self.static_root}")
        prepare(self.env)
        tls = None
        if self.https_listen:
            host = split_listen(self.https_listen)[0]
            cert, key = make_self_signed_certificate(self.tls_dir, ("localhost", "127.0.0.1", "::1", host))
            tls = TLS(self.https_listen, cert, key)
        write_nginx_conf(self.nginx_prefix, listen=self.listen, upstreams=[w.address for w in self.webs],
                         static_root=self.static_root, log_dir=self.log_dir, limits=self.limits, tls=tls)
        subprocess.run(nginx_argv(self.nginx_prefix, self.nginx_conf, test=True), check=True)
        for child in self.children:
            if child.name == "nginx" or child in self.webs:
                continue
            self.spawn(child)
            if child.ready:
                self.wait_ready(child)
            if child in self.feeds:
                self.wait_feed_role(child)
        for web in self.webs:  # in parallel: each takes a second or two to import Django
            self.spawn(web)
        for web in self.webs:
            self.wait_ready(web)
        self.spawn(self.nginx)
        self.wait_ready(self.nginx)
        self.summary(time.monotonic() - began)

    def spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if child.address.startswith("unix:"):  # a killed server leaves its socket file behind
            path = Path(child.address.removeprefix("unix:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
        log = self.log(child)
        with open(log, "ab") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {child.name}\n".encode())
            fh.flush()
            child.log_offset = fh.tell()
            # A session of its own: Ctrl-C in the terminal reaches the supervisor only, which
            # then stops the children in order.
            child.popen = subprocess.Popen(child.argv, cwd=ROOT, env=child.env, stdout=fh,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
        child.started = time.monotonic()
        write_pidfile(self.pidfile(child), child.pid)

    def wait_ready(self, child: Child, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not child.ready():
            if self.stopping:
                raise Stopping
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{self.output(child)[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not ready after {timeout:.0f} s; see {self.log(child)}")
            time.sleep(0.1)

    def wait_feed_role(self, feed: Child, timeout: float = 10.0) -> str:
        """Wait until a feed says whether it is active or a standby (the lease decides)."""
        deadline = time.monotonic() + timeout
        while True:
            role = self.feed_role(feed)
            if role != "?":
                return role
            if self.stopping:
                raise Stopping
            if not feed.alive():
                raise RuntimeError(f"{feed.name} exited:\n{self.output(feed)[-2000:]}")
            if time.monotonic() > deadline:
                say(f"{feed.name}: no word on its role after {timeout:.0f} s; see {self.log(feed)}")
                return "?"
            time.sleep(0.1)

    def feed_role(self, feed: Child) -> str:
        text = self.output(feed)
        active, standby = text.rfind(": active, epoch"), text.rfind("standby:")
        return "active" if active > standby else "standby" if standby >= 0 else "?"

    def summary(self, took: float) -> None:
        say(f"up in {took:.1f} s: {self.url}/   admin: {self.url}/admin/   health: {self.url}/healthz")
        if self.https_url:
            say(f"  https: {self.https_url}/ (self-signed: {self.tls_dir / 'fullchain.pem'})")
        say("  per address: " + (f"{self.limits.ws_per_ip} WebSockets, " if self.limits.ws_per_ip else "")
            + (f"{self.limits.req_per_second} requests/s (burst {self.limits.req_burst})"
               if self.limits.req_per_second else "no request limit"))
        for child in self.children:
            where = child.address or self.feed_role(child)
            say(f"  {child.name:<6} {where:<16} pid {child.pid}")
        if self.external_redis:
            say(f"  redis: {self.external_redis} (not started here)")
        say(f"logs: {self.log_dir}/   stop: Ctrl-C or `make cluster-stop`   rolling restart: `make cluster-restart`")

    # Run

    def serve(self) -> int:
        """Start, then watch until told to stop; always stop what was started. Exit status."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_restart)
        status = 0
        try:
            self.start()
            while not self.stopping:
                if self.restart_requested:
                    self.restart_requested = False
                    self.rolling_restart()
                if not self.watch():
                    status = 1
                    break
                time.sleep(0.2)
        except Stopping:
            pass
        except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError) as exc:
            say(f"error: {exc}")
            status = 1
        finally:
            self.stop_all()
        return status

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            say(f"{signal.Signals(signum).name}: stopping")
        self.stopping = True

    def _on_restart(self, signum: int, frame: FrameType | None) -> None:
        self.restart_requested = True

    def watch(self) -> bool:
        """Start again any child that died. False after a crash loop (the cluster stops)."""
        for child in self.children:
            if child.popen is None or child.alive():
                continue
            code = child.popen.returncode
            quick = time.monotonic() - child.started < QUICK_CRASH_SECONDS
            child.quick_crashes = child.quick_crashes + 1 if quick else 0
            if child.quick_crashes >= MAX_QUICK_CRASHES:
                say(f"{child.name} keeps exiting (code {code}):\n{self.output(child)[-2000:]}")
                return False
            say(f"{child.name} (pid {child.pid}) exited with code {code}; starting it again")
            self.spawn(child)
        return True

    def rolling_restart(self) -> None:
        """Restart the app servers one at a time; the next only once the new one is healthy.

        daphne cannot hand connections over: the restarted server's clients are cut (1006),
        reconnect through nginx to the others with backoff and jitter, and ``resume``."""
        request = self.run_dir / "restart.request"
        token = request.read_text().strip() if request.exists() else "-"
        began = time.monotonic()
        try:
            for web in self.webs:
                old = web.pid
                t0 = time.monotonic()
                self.terminate(web)
                self.spawn(web)
                self.wait_ready(web)
                say(f"restart: {web.name} pid {old} -> {web.pid}, healthy in {time.monotonic() - t0:.1f} s")
            result = f"{token} ok {time.monotonic() - began:.1f}"
        except RuntimeError as exc:
            say(f"restart failed: {exc}")
            result = f"{token} failed {exc}"
        (self.run_dir / "restart.result").write_text(result + "\n")

    # Stop

    def terminate(self, *children: Child) -> None:
        """Stop these children together: SIGTERM, SIGKILL after STOP_TIMEOUT s."""
        running = [child for child in children if child.alive()]
        for child in running:
            child.popen.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in running:
            try:
                child.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(5)
        for child in children:
            self.pidfile(child).unlink(missing_ok=True)

    def stop_all(self) -> None:
        """Front to back, each tier at once: nginx (clients go), app servers, feeds, redis."""
        started = [child for child in self.children if child.popen is not None]
        for tier in ([self.nginx], self.webs, self.feeds, self.children):
            self.terminate(*[child for child in tier if child in started])
        self.supervisor_pidfile.unlink(missing_ok=True)
        say("stopped")


def say(message: str) -> None:
    print(f"cluster: {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Commands for another terminal


def stop(run_dir: Path = RUN_DIR, timeout: float = 60.0) -> int:
    """Stop a running cluster: its supervisor stops its children; anything a killed supervisor
    left behind (recorded in .run/pids/) is stopped by pid."""
    found = False
    supervisor = read_pidfile(run_dir / "cluster.pid")
    if supervisor:
        found = True
        say(f"stopping the cluster (supervisor pid {supervisor})")
        os.kill(supervisor, signal.SIGTERM)
        if not wait_gone(supervisor, timeout):
            say(f"supervisor {supervisor} still running after {timeout:.0f} s")
            return 1
    for pidfile in sorted((run_dir / "pids").glob("*.pid")):
        pid = read_pidfile(pidfile)
        if pid:
            found = True
            say(f"stopping {pidfile.stem} (pid {pid}), left behind")
            stop_pid(pid)
        pidfile.unlink(missing_ok=True)
    (run_dir / "cluster.pid").unlink(missing_ok=True)
    if not found:
        say("no cluster running")
    return 0


def restart(run_dir: Path = RUN_DIR, timeout: float = 180.0) -> int:
    """Ask the running cluster for a rolling restart of its app servers and wait for the end."""
    supervisor = read_pidfile(run_dir / "cluster.pid")
    if not supervisor:
        say("no cluster running: `make cluster` first")
        return 1
    token = secrets.token_hex(4)
    result = run_dir / "restart.result"
    result.unlink(missing_ok=True)
    (run_dir / "restart.request").write_text(token + "\n")
    os.kill(supervisor, signal.SIGUSR1)
    say("rolling restart of the app servers, one at a time")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result.exists() and result.read_text().startswith(token):
            _, outcome, detail = result.read_text().strip().split(" ", 2)
            if outcome == "ok":
                say(f"restarted every app server in {detail} s")
                return 0
            say(f"restart failed: {detail}")
            return 1
        if not read_pidfile(run_dir / "cluster.pid"):
            say("the cluster stopped during the restart")
            return 1
        time.sleep(0.1)
    say(f"no answer after {timeout:.0f} s")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="pids, logs, nginx files (default .run/)")
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start the cluster in the foreground; Ctrl-C stops it")
    start_cmd.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    start_cmd.add_argument("--listen", default="127.0.0.1:8080", help="nginx's address (default %(default)s)")
    start_cmd.add_argument("--app-port", type=int, default=0,
                           help="app servers on loopback ports from this one (default: unix sockets in .run/sockets/)")
    start_cmd.add_argument("--redis-port", type=int, default=6380,
                           help="redis-server port (default %(default)s); with CHANNEL_LAYER_URL set, none is started")
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
    sub.add_parser("render-compose", help=f"rewrite {COMPOSE_CONF.relative_to(ROOT)} from the template")
    sub.add_parser("tls-cert", help="make a self-signed certificate for local use in RUN_DIR/tls/")
    opts = parser.parse_args(argv)
    if opts.command == "start":
        try:
            cluster = Cluster(opts.run_dir, workers=opts.workers, listen=opts.listen, app_port=opts.app_port,
                              redis_port=opts.redis_port, feeds=opts.feeds, https_listen=opts.https_listen,
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
    if opts.command == "tls-cert":
        cert, key = make_self_signed_certificate(opts.run_dir / "tls")
        say(f"certificate {cert}, key {key} (self-signed: for this machine only)")
        return 0
    COMPOSE_CONF.write_text(render_compose_nginx())
    say(f"wrote {COMPOSE_CONF.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
