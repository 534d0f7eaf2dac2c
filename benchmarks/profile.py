"""Where a server's CPU goes while it fans out: py-spy over one load run.

    python -m benchmarks.profile --path ours-daphne --clients 2000 --seconds 15

Starts the path as ``benchmarks.run`` does, connects the load client, samples the server
process with py-spy (``--nonblocking``, 200 Hz, idle frames left out) for ``--seconds`` in the
middle of the measure window, and prints a Markdown table of where the samples fall: by
component (our code, Twisted, autobahn, daphne, uvicorn, asyncio, ...) and the functions with
the most own time. ``--out FILE`` also writes it there.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import PY, ROOT, Bench
from .run import PATHS

AREAS = (  # first match wins: (label, substring of the frame's file)
    ("ticker (hub, delivery, fast path)", "/ticker/"),
    ("daphne", "/daphne/"),
    ("autobahn (WebSocket framing)", "/autobahn/"),
    ("twisted (reactor, transports)", "/twisted/"),
    ("uvicorn", "/uvicorn/"),
    ("websockets (framing)", "/websockets/"),
    ("channels / asgiref", "/channels/"),
    ("channels / asgiref", "/asgiref/"),
    ("redis / channels_redis", "redis"),
    ("asyncio / selectors (event loop)", "/asyncio/"),
    ("asyncio / selectors (event loop)", "/selectors.py"),
    ("orjson / msgpack", "orjson"),
    ("gc", "<gc>"),
)


def own_frame(stack: str) -> str:
    """The innermost frame of a collapsed stack (``a;b;c`` → ``c``)."""
    return stack.rsplit(";", 1)[-1]


def area_of(frame: str) -> str:
    where = "/" + frame.rpartition("(")[2]  # py-spy names files relative to site-packages
    for label, needle in AREAS:
        if needle in where:
            return label
    return "other (stdlib, C calls)"


def summarise(raw: Path, top: int) -> str:
    """A Markdown summary of py-spy's collapsed-stack output."""
    by_area: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frame = own_frame(stack)
        by_area[area_of(frame)] += n
        by_function[frame.replace(str(ROOT) + "/", "").split("/site-packages/")[-1]] += n
    if not total:
        return "no samples\n"
    lines = ["| component (own time) | share |", "|---|---|"]
    lines += [f"| {area} | {100 * n / total:.0f} % |" for area, n in by_area.most_common()]
    lines += ["", "| function (own time) | share |", "|---|---|"]
    lines += [f"| `{name}` | {100 * n / total:.1f} % |" for name, n in by_function.most_common(top)]
    return "\n".join(lines) + f"\n\n{total} samples.\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="ours-daphne", choices=sorted(PATHS))
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to sample")
    parser.add_argument("--top", type=int, default=15, help="how many functions to list")
    parser.add_argument("--out", type=Path, help="also write the summary here")
    opts = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    logdir = Path(tempfile.mkdtemp(prefix="ticker-profile-"))
    bench = Bench(logdir)
    spec = PATHS[opts.path]
    try:
        _, env = spec.start_infra(bench)
        deployment = spec.start_server(bench, env)
        server = deployment.servers[0]
        warm = opts.clients / 500 + 4
        client = subprocess.Popen(
            [PY, "-m", "benchmarks.loadclient", "--url", deployment.url, "--clients", str(opts.clients),
             "--dialect", spec.dialect, "--duration", str(opts.seconds + 6)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(warm)
        raw = logdir / "profile.txt"
        subprocess.run([pyspy, "record", "--pid", str(server.pid), "--duration", str(int(opts.seconds)),
                        "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(raw)],
                       check=True, capture_output=True, timeout=opts.seconds + 60)
        client.wait(timeout=opts.clients / 500 + opts.seconds + 120)
        text = (f"`python -m benchmarks.profile --path {opts.path} --clients {opts.clients} "
                f"--seconds {opts.seconds:g}`\n\n" + summarise(raw, opts.top))
        print(text)
        if opts.out:
            opts.out.write_text(text)
    finally:
        bench.cleanup()
        shutil.rmtree(logdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
