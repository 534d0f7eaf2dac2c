"""Start the ASGI server the environment asks for: ``python -m dashboard.serve``.

``ASGI_SERVER=daphne`` (the default: what Channels ships) or ``uvicorn`` (uvloop, httptools
and the sans-I/O websockets implementation; docs/PERFORMANCE.md compares them). Both get
the flags this application wants: no 24 h WebSocket cut-off, keepalive pings, no
permessage-deflate, the protocol's frame limit enforced by the server, proxy headers when
behind nginx. The process is replaced by the server
(exec), so its pid is the server's, and it tells the application which server it is
(``TICKER_SERVED_BY``): SIGTERM then drains (``dashboard.drain``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence

from ticker.protocol import MAX_FRAME_BYTES

APP = "dashboard.asgi:application"
SERVERS = ("daphne", "uvicorn")
# Seconds an app server's drain on SIGTERM waits for its clients to go (TICKER_DRAIN_SECONDS
# overrides it; dashboard/drain.py): stated here, where settings and the cluster's supervisord read it.
DRAIN_SECONDS = 10.0
# Every listener's accept queue: Twisted listens with 50, which a reconnect storm overflows
# (a unix socket then fails connect() at once, so nginx answers 502; TCP drops the SYN and the
# client waits 1 s, 3 s, … to retry). uvicorn's default is the same 2048.
BACKLOG = 2048
# Clients' frames are capped at the protocol's limit by the server itself (it closes with 1009).
# autobahn applies its message limit to what it *sends* too, so daphne's stays above the largest
# frame the application sends through ASGI (a hello or whole-board snap of a few hundred
# symbols); an unfinished fragmented message from a client holds at most this much.
DAPHNE_MAX_MESSAGE = 64 * 1024
# Seconds between keepalive pings on a silent WebSocket (a whole-board client sends nothing after
# its `sub`); TICKER_PING_SECONDS changes it, for tests that watch pings go out.
PING_SECONDS = "20"


def escape(value: str) -> str:
    """A value for Twisted's endpoint syntax (``:`` and ``\\`` are special)."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def server_argv(
    server: str, host: str, port: int, unix_socket: str | None, proxy_headers: bool,
    tls: tuple[str, str] | None = None, fd: int | None = None,
) -> list[str]:
    """The command line that runs ``server`` with this application (``tls``: certificate and key
    files; ``fd``: a listening socket it inherited, shared with other server processes)."""
    ping = os.environ.get("TICKER_PING_SECONDS", PING_SECONDS)
    if server == "daphne":
        # daphne with its keepalive pings spread over time (dashboard/daphne_server.py), its CLI unchanged
        argv = [sys.executable, "-m", "dashboard.daphne_server", "--websocket_timeout", "-1", "--ping-interval", ping,
                "--ping-timeout", "30", "--websocket-max-frame-size", str(MAX_FRAME_BYTES),
                "--websocket-max-message-size", str(DAPHNE_MAX_MESSAGE)]
        if unix_socket:
            # Not daphne's -u: that listens with Twisted's default backlog of 50, and on a unix
            # socket a full backlog fails connect() at once (EAGAIN), so a burst of connections
            # through nginx (clients reconnecting after a worker restart) gets 502s. uvicorn's
            # default backlog is 2048. The path is escaped for Twisted's endpoint syntax.
            argv += ["-e", f"unix:{escape(unix_socket)}:backlog={BACKLOG}"]
        elif fd is not None:
            argv += ["--fd", str(fd)]
        elif tls:
            cert, key = tls
            argv += ["-e", f"ssl:{port}:interface={escape(host)}:backlog={BACKLOG}:certKey={escape(cert)}"
                           f":privateKey={escape(key)}"]
        else:  # not -b/-p: they listen with Twisted's backlog
            argv += ["-e", f"tcp:{port}:interface={escape(host)}:backlog={BACKLOG}"]
        if proxy_headers:
            argv.append("--proxy-headers")
        return [*argv, APP]
    if server == "uvicorn":
        argv = [sys.executable, "-m", "uvicorn", "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
                "--ws-per-message-deflate", "false", "--ws-ping-interval", ping, "--ws-ping-timeout", "30",
                "--ws-max-size", str(MAX_FRAME_BYTES),
                "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        if unix_socket:
            argv += ["--uds", unix_socket]
        elif fd is not None:
            argv += ["--fd", str(fd)]
        else:
            argv += ["--host", host, "--port", str(port)]
        argv += ["--backlog", str(BACKLOG)]
        if tls:
            argv += ["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]]
        argv += ["--proxy-headers", "--forwarded-allow-ips", "*"] if proxy_headers else ["--no-proxy-headers"]
        return [*argv, APP]
    raise ValueError(f"ASGI_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")


def deepen(fd: int) -> None:
    """Give an inherited listening socket our backlog: whoever made it chose theirs (listening
    again on a listening socket only changes the queue's length)."""
    listener = socket.socket(fileno=fd)
    try:
        listener.listen(BACKLOG)
    finally:
        listener.detach()


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("ASGI_SERVER", "daphne"), choices=SERVERS)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--unix-socket", help="listen on this unix socket instead of host:port")
    parser.add_argument("--fd", type=int, help="accept on this inherited listening socket instead of host:port "
                        "(several processes on one socket: supervisor's fcgi-program passes 0)")
    parser.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-For (behind nginx only)")
    parser.add_argument("--tls-cert", help="serve HTTPS/WSS with this certificate (PEM; with --tls-key)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    opts = parser.parse_args(args)
    if bool(opts.tls_cert) != bool(opts.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if opts.fd is not None and (opts.unix_socket or opts.tls_cert):
        parser.error("--fd takes the place of --unix-socket and TLS: terminate TLS in front of a shared socket")
    tls = (opts.tls_cert, opts.tls_key) if opts.tls_cert else None
    if opts.fd is not None:
        deepen(opts.fd)
    argv = server_argv(opts.server, opts.host, opts.port, opts.unix_socket, opts.proxy_headers, tls, opts.fd)
    os.environ["TICKER_SERVED_BY"] = opts.server
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
