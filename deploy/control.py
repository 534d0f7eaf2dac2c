"""A running supervisord, through its control socket (the XML-RPC interface supervisorctl uses):
what it runs and under which pid, and ``supervisorctl`` itself for what an operator would type.

The cluster runner (deploy/cluster.py), the chaos and soak runners and the tests read pids
here; none of them keeps pid files of its own.
"""

from __future__ import annotations

import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from deploy.procs import PYTHON, ROOT

SUPERVISORD = [PYTHON, "-m", "supervisor.supervisord"]
SUPERVISORCTL = [PYTHON, "-m", "supervisor.supervisorctl"]


@dataclass(frozen=True)
class Process:
    """One process supervisord manages: ``name`` (``web_1``), ``group:name`` for supervisorctl,
    its state (RUNNING, STARTING, BACKOFF, EXITED, FATAL, …) and pid (0 unless running)."""

    name: str
    spec: str
    state: str
    pid: int

    @property
    def running(self) -> bool:
        return self.state == "RUNNING" and self.pid > 0


class Control:
    """The supervisord listening on ``socket``, for its configuration ``conf``."""

    def __init__(self, socket: Path, conf: Path) -> None:
        self.socket = socket
        self.conf = conf

    def call(self, method: str, *args: Any) -> Any:
        """``supervisor.METHOD(*args)`` over a connection of its own (closed after: the
        benchmarks ask from several threads)."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        try:
            proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
            return getattr(proxy.supervisor, method)(*args)
        finally:
            transport.close()

    def pid(self) -> int | None:
        """supervisord's own pid, or None when nothing answers on the socket."""
        try:
            return int(self.call("getPID"))
        except (OSError, xmlrpc.client.Error):
            return None

    def processes(self) -> dict[str, Process]:
        """Every process in the configuration, by name (empty when supervisord is not running)."""
        try:
            infos: list[dict[str, Any]] = self.call("getAllProcessInfo")
        except (OSError, xmlrpc.client.Error):
            return {}
        return {
            info["name"]: Process(info["name"], f"{info['group']}:{info['name']}", info["statename"], info["pid"])
            for info in infos
        }

    def pids(self) -> dict[str, int]:
        """The running processes' pids, by name."""
        return {name: proc.pid for name, proc in self.processes().items() if proc.running}

    def start(self, spec: str, wait: bool = True) -> None:
        """Start ``spec`` (``group:name``); with ``wait``, return once it has stayed up ``startsecs``."""
        self.call("startProcess", spec, wait)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``supervisorctl -c CONF ARGS…``, as an operator runs it."""
        return subprocess.run([*SUPERVISORCTL, "-c", str(self.conf), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)


def pid_alive(pid: int) -> bool:
    """The process ``pid`` exists and is no zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
