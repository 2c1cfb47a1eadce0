"""What an idle gateway's memory is made of, import by import.

``python -m bench.imports`` (from the repo root) answers the question behind the idle RSS
target: which imports cost how many MB, and which line of which module makes them
happen, so the heavy ones can be made lazy. Every figure comes from a fresh interpreter
reading its own resident set size from ``/proc/self/statm`` (Linux), so nothing the
harness imports is counted.

It prints four tables:

* **ladder**: one interpreter imports the stack step by step in the order the gateway
  needs it (reactor, twisted.web, Klein, grpc, descriptors, ...; then the gateway's own
  modules, dependencies first; then the service built and started with the Cuebot
  unreachable) and reports RSS after each step. A step's MB is its marginal cost: what
  an earlier step already imported is not counted again.
* **alone**: each third-party piece imported on its own into a bare interpreter, so a
  piece that the ladder shows as cheap because an earlier step pulled it in still shows
  what it costs by itself.
* **first importers**: for the heavy packages, the chain of import lines (outside the
  import machinery) that loaded each first when the gateway is built and started: the
  innermost ``opencue_gw`` line is the one to make lazy.
* **twistd**: ``twistd -n opencue-gateway`` as operators run it, idle, for comparison.

The gateway's sources are compiled to bytecode first (see :func:`compile_sources`).
``--quick`` skips the alone table. Figures move by a few hundred KB between runs (the
allocator's arenas); steps under 0.5 MB are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
# The gateway's own source trees; installed from a wheel, they would have bytecode.
SOURCE_PACKAGES = ("opencue_gw", "proto_gen", "twisted/plugins")
SECRET = "bench-secret-that-is-long-enough-for-hs512-0123456789abcdef"

# (label, statement); run in order in one interpreter. The gateway's own modules and the
# service are appended by the child itself.
THIRD_PARTY_STEPS: list[tuple[str, str]] = [
    ("twisted reactor (default, epoll)", "from twisted.internet import reactor"),
    ("twistd + twisted.application", "from twisted.scripts import twistd"),
    ("twisted.web.server", "import twisted.web.server"),
    ("twisted.cred", "import twisted.cred.portal, twisted.cred.checkers"),
    ("klein (+ werkzeug)", "import klein"),
    ("grpc", "import grpc"),
    ("google.protobuf", "import google.protobuf.message, google.protobuf.json_format"),
    ("opencue_proto *_pb2 (descriptors)", "_import_all('opencue_proto', '_pb2')"),
    ("prometheus_client", "import prometheus_client"),
    ("jwt", "import jwt"),
    ("jwt.algorithms (cryptography asymmetric keys)", "import jwt.algorithms"),
    ("OpenSSL (pyOpenSSL)", "import OpenSSL.SSL"),
    ("treq", "import treq"),
    ("proto_gen.opencue_codecs (generated codecs)", "import proto_gen.opencue_codecs"),
]

# Measured one by one in a bare interpreter.
ALONE: list[tuple[str, str]] = [
    *THIRD_PARTY_STEPS[:1],
    (
        "twisted reactor with pyOpenSSL hidden",
        "import sys; sys.modules['OpenSSL'] = None; from twisted.internet import reactor",
    ),
    *THIRD_PARTY_STEPS[1:7],
    ("opencue_proto *_pb2 (descriptors)", "_import_all('opencue_proto', '_pb2')"),
    (
        "opencue_proto *_pb2_grpc (stubs; the gateway does not load them)",
        "_import_all('opencue_proto', '_pb2_grpc')",
    ),
    *THIRD_PARTY_STEPS[8:],
    ("cryptography (rust bindings)", "import cryptography.hazmat.bindings._rust"),
    (
        "twisted reactor + jwt with pyOpenSSL hidden (cryptography still comes, via PyJWT)",
        "import sys; sys.modules['OpenSSL'] = None; from twisted.internet import reactor; "
        "import jwt",
    ),
    ("twisted reactor + jwt", "from twisted.internet import reactor; import jwt"),
]

# Where the gateway's own lines are, in a first-import chain.
GATEWAY_FILES = ("opencue_gw", "proto_gen", "twisted/plugins")

# Top-level packages (or modules) whose first importer is reported.
WATCH = (
    "OpenSSL",
    "cryptography",
    "service_identity",
    "treq",
    "jwt",
    "jwt.algorithms",
    "prometheus_client",
    "grpc",
    "google.protobuf",
    "opencue_proto",
    "proto_gen.opencue_codecs",
    "klein",
    "werkzeug",
    "twisted.web.client",
    "twisted.web.server",
    "twisted.internet.ssl",
    "twisted.internet._sslverify",
    "twisted.protocols.tls",
    "idna",
    "certifi",
    "tomllib",
    "multipart",
    "hyperlink",
    "h2",
    "grpc_tools",
    "unittest",
    "asyncio",
    "pdb",
    "xml",
    "email.message",
    "http.cookiejar",
)


def compile_sources() -> None:
    """
    Compile the gateway's sources to bytecode, as a wheel install does, before measuring.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (these machines set it), a gateway started
    from the source tree compiles every module at each start, and the compiler's peak
    stays in the process: 5 MB more idle RSS in one measurement, 11 MB more for the
    generated codecs alone. Whether a tree has bytecode depends on what ran before, so
    the harness compiles first and every figure is that of an installed gateway.
    Hash-checked bytecode is used so that a file edited in the same second is never
    served stale.
    """
    import compileall
    import py_compile

    for name in SOURCE_PACKAGES:
        path = REPO / name
        if path.is_dir():
            compileall.compile_dir(
                path,
                quiet=1,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )


# ---------------------------------------------------------------------------------------
# The child side: runs in a fresh interpreter
# ---------------------------------------------------------------------------------------


def rss() -> int:
    """This process's resident set size in bytes, from /proc (no import of psutil)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _import_all(package: str, suffix: str) -> None:
    """Import every module of ``package`` whose name ends with ``suffix``."""
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.endswith(suffix):
            importlib.import_module(f"{package}.{info.name}")


def _gateway_modules() -> list[str]:
    """The gateway's own modules the plugin loads, dependencies before their importers."""
    before = set(sys.modules)
    import importlib

    importlib.import_module("opencue_gw.tap")
    # sys.modules gets a module when its import starts, so its order is a pre-order of
    # the import tree; reversed, every module comes after the modules it first imported.
    new = [m for m in sys.modules if m not in before and m.split(".")[0] == "opencue_gw"]
    return list(reversed(new))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway_argv(port: int, cuebot_port: int) -> list[str]:
    return [
        "--cuebot",
        f"127.0.0.1:{cuebot_port}",
        "--port",
        f"tcp:{port}:interface=127.0.0.1",
    ]


def _build_and_start(run_seconds: float) -> list[tuple[str, int]]:
    """Build the gateway through its twistd plugin, then start it; RSS after each."""
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    out = []
    os.environ.setdefault("JWT_SECRET", SECRET)
    os.environ.setdefault("LOG_LEVEL", "warn")
    (maker,) = [p for p in getPlugins(IServiceMaker) if p.tapname == "opencue-gateway"]
    options = maker.options()
    # Nothing listens on the Cuebot port: the idle gateway as it waits for Cuebot.
    options.parseOptions(_gateway_argv(_free_port(), _free_port()))
    service = maker.makeService(options)
    out.append(("service built (makeService: routes, settings, ...)", rss()))
    # As in twistd: the reactor is imported once the service is built, unless the
    # gateway's modules imported it before.
    from twisted.internet import reactor

    service.startService()
    reactor.callLater(run_seconds, reactor.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    out.append((f"service started, reactor ran {run_seconds:.0f} s", rss()))
    return out


def child_ladder() -> None:
    """Print one JSON line per step: label, RSS, modules loaded so far, new top-levels."""

    def emit(label: str, value: int, tops: set[str]) -> set[str]:
        now = {m.split(".")[0] for m in sys.modules}
        print(
            json.dumps(
                {
                    "label": label,
                    "rss": value,
                    "modules": len(sys.modules),
                    "new": sorted(now - tops - {"__main__"}),
                }
            ),
            flush=True,
        )
        return now

    tops = emit("interpreter (site, bench.imports)", rss(), set())
    for label, stmt in THIRD_PARTY_STEPS:
        exec(stmt, {"_import_all": _import_all})
        tops = emit(label, rss(), tops)
    # The gateway's modules in dependency order, measured one at a time in a second
    # interpreter would be cleaner, but they are cheap next to the stack: one list.
    for name in _gateway_modules_in_fresh_order():
        __import__(name)
        tops = emit(name, rss(), tops)
    for label, value in _build_and_start(2.0):
        tops = emit(label, value, tops)


def _gateway_modules_in_fresh_order() -> list[str]:
    """The gateway's module order, found in another interpreter so this one stays clean."""
    code = "import json, bench.imports as b; print(json.dumps(b._gateway_modules()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def child_alone(stmt: str) -> None:
    """RSS before and after one statement, as JSON."""
    base = rss()
    exec(stmt, {"_import_all": _import_all})
    print(json.dumps({"base": base, "after": rss(), "modules": len(sys.modules)}), flush=True)


class FirstImporters:
    """A meta path finder that only watches: the import chain of each watched first load."""

    def __init__(self, watch: tuple[str, ...]) -> None:
        self.watch = set(watch)
        self.chains: dict[str, list[str]] = {}

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name in self.watch and name not in self.chains:
            import traceback

            frames = [
                f
                for f in traceback.extract_stack()[:-1]
                if not f.filename.startswith("<") and f.filename != __file__
            ]
            self.chains[name] = [_where(f.filename, f.lineno or 0, f.line or "") for f in frames]
        return None


def _where(filename: str, lineno: int, line: str) -> str:
    """``path:line  code`` with the path shortened to the repo or the installed package."""
    path = filename
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif path.startswith(str(REPO) + os.sep):
        path = path[len(str(REPO)) + 1 :]
    return f"{path}:{lineno}  {line.strip()}"


def child_who() -> None:
    """Print, as JSON, the first-import chain of each watched package."""
    finder = FirstImporters(WATCH)
    sys.meta_path.insert(0, finder)  # type: ignore[arg-type]
    from twisted.scripts import twistd  # noqa: F401  (what twistd has loaded first)

    _build_and_start(1.0)
    # A name looked up but not found (an optional dependency that is absent) is dropped.
    loaded = {k: v for k, v in finder.chains.items() if k in sys.modules}
    print(json.dumps(loaded), flush=True)


# ---------------------------------------------------------------------------------------
# The parent side
# ---------------------------------------------------------------------------------------


def _child(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.imports", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.imports {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return [line for line in out.stdout.splitlines() if line.startswith(("{", "["))]


def ladder() -> list[str]:
    lines = [
        "| step | RSS MB | + MB | modules | new top-level packages |",
        "|---|---:|---:|---:|---|",
    ]
    prev = None
    for raw in _child("--child-ladder"):
        d = json.loads(raw)
        delta = "" if prev is None else f"{(d['rss'] - prev) / MB:+.1f}"
        new = ", ".join(d["new"][:12]) + (" ..." if len(d["new"]) > 12 else "")
        lines.append(f"| {d['label']} | {d['rss'] / MB:.1f} | {delta} | {d['modules']} | {new} |")
        prev = d["rss"]
    return lines


def alone() -> list[str]:
    lines = ["| imported alone | + MB over a bare interpreter | modules |", "|---|---:|---:|"]
    for label, stmt in ALONE:
        d = json.loads(_child("--child-alone", stmt)[-1])
        lines.append(f"| {label} | {(d['after'] - d['base']) / MB:.1f} | {d['modules']} |")
    return lines


def who() -> list[str]:
    chains: dict[str, list[str]] = json.loads(_child("--child-who")[-1])
    lines = []
    for name in WATCH:
        chain = chains.get(name)
        if chain is None:
            lines.append(f"- `{name}`: not imported")
            continue
        ours = [c for c in chain if c.startswith(GATEWAY_FILES)]
        lines.append(f"- `{name}`, first imported by `{chain[-1]}`")
        if ours:
            via = " → ".join(f"`{c}`" for c in ours if c != chain[-1])
            if via:
                lines.append(f"  - via the gateway's {via}")
        else:
            outer = [c for c in chain if "bench/imports.py" not in c]
            lines.append(f"  - no gateway line in the chain (outermost: `{outer[0]}`)")
    return lines


def twistd_idle() -> list[str]:
    """RSS of ``twistd -n opencue-gateway`` after it has listened for 3 s, Cuebot absent."""
    port = _free_port()
    argv = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "opencue-gateway",
        *_gateway_argv(port, _free_port()),
    ]
    env = {**os.environ, "JWT_SECRET": SECRET, "LOG_LEVEL": "warn"}
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(3.0)
        if proc.poll() is not None:
            return [f"twistd exited with {proc.returncode} before it was measured"]
        with open(f"/proc/{proc.pid}/statm") as f:
            value = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return [f"`twistd -n opencue-gateway`, idle, Cuebot unreachable: {value / MB:.1f} MB"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__)
    p.add_argument("--quick", action="store_true", help="skip the imported-alone table")
    p.add_argument("--child-ladder", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-alone", metavar="STMT", help=argparse.SUPPRESS)
    p.add_argument("--child-who", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_ladder:
        child_ladder()
        return 0
    if a.child_alone is not None:
        child_alone(a.child_alone)
        return 0
    if a.child_who:
        child_who()
        return 0
    compile_sources()
    out = ["## Ladder (one interpreter, cumulative)", "", *ladder(), ""]
    if not a.quick:
        out += ["## Imported alone", "", *alone(), ""]
    out += ["## First importers (gateway built and started)", "", *who(), ""]
    out += ["## twistd", "", *twistd_idle()]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
