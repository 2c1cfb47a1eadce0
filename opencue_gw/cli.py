# -*- test-case-name: tests.integration.test_cli -*-
"""
C{opencue-gw}: the gateway from a terminal, for people and shell scripts.

It mints tokens, calls any RPC, submits jobs described in JSON or YAML, and lists or
acts on shows, jobs, frames, layers and hosts through the synchronous client. Tables are
for reading; C{--json} prints the gateway's JSON for scripts. The exit status says what
went wrong without parsing text:

    0  success
    1  any other failure (Cuebot error, internal error)
    2  usage: bad arguments, or the gateway refused a value (INVALID_ARGUMENT,
       FAILED_PRECONDITION, OUT_OF_RANGE)
    3  authentication or permission: no token, bad token, not allowed
    4  not found
    5  unavailable: gateway or Cuebot unreachable, draining, or deadline exceeded

C{wait} adds its own: 0 when every frame of the finished job succeeded (or was eaten),
1 when it finished with dead (or unfinished, after a kill) frames, 6 when the wait timed
out first. C{watch} prints events until interrupted (or C{--max-events}).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from opencue_gw.auth.tokens import mint_token
from opencue_gw.client import DEFAULT_URL, GatewayClient, GatewayClientError
from opencue_gw.client.core import TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV
from opencue_gw.client.sse import describe
from opencue_gw.config import parse_duration

__all__ = ["EXIT_CODES", "exit_code_for", "main"]

EXIT_OK, EXIT_OTHER, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_FAILED_FRAMES, EXIT_TIMEOUT = 1, 6
# gRPC code -> exit status; anything else is EXIT_OTHER.
EXIT_CODES: Mapping[int, int] = {
    3: EXIT_USAGE,
    9: EXIT_USAGE,
    11: EXIT_USAGE,
    16: EXIT_AUTH,
    7: EXIT_AUTH,
    5: EXIT_NOT_FOUND,
    14: EXIT_UNAVAILABLE,
    4: EXIT_UNAVAILABLE,
}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def exit_code_for(error: GatewayClientError) -> int:
    """The exit status for a failed call."""
    return EXIT_CODES.get(error.code, EXIT_OTHER)


class _Usage(Exception):
    """A command-line mistake found after parsing (exit 2)."""


def _stats(key: str, name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda item: (item.get(key) or {}).get(name, "")


_TABLES: Mapping[str, Sequence[Column]] = {
    "shows": (
        ("NAME", lambda s: s.get("name")),
        ("ACTIVE", lambda s: s.get("active")),
        ("RUNNING", _stats("showStats", "runningFrames")),
        ("PENDING", _stats("showStats", "pendingFrames")),
        ("DEAD", _stats("showStats", "deadFrames")),
        ("ID", lambda s: s.get("id")),
    ),
    "jobs": (
        ("NAME", lambda j: j.get("name")),
        ("STATE", lambda j: "PAUSED" if j.get("isPaused") else j.get("state")),
        ("USER", lambda j: j.get("user")),
        ("RUN", _stats("jobStats", "runningFrames")),
        ("WAIT", _stats("jobStats", "waitingFrames")),
        ("DEAD", _stats("jobStats", "deadFrames")),
        ("DONE", _stats("jobStats", "succeededFrames")),
        ("TOTAL", _stats("jobStats", "totalFrames")),
        ("ID", lambda j: j.get("id")),
    ),
    "frames": (
        ("FRAME", lambda f: f.get("name")),
        ("STATE", lambda f: f.get("state")),
        ("RETRIES", lambda f: f.get("retryCount")),
        ("EXIT", lambda f: f.get("exitStatus")),
        ("HOST", lambda f: (f.get("lastResource") or "").split("/")[0]),
        ("ID", lambda f: f.get("id")),
    ),
    "layers": (
        ("NAME", lambda la: la.get("name")),
        ("TYPE", lambda la: la.get("type")),
        ("RUN", _stats("layerStats", "runningFrames")),
        ("WAIT", _stats("layerStats", "waitingFrames")),
        ("DEAD", _stats("layerStats", "deadFrames")),
        ("DONE", _stats("layerStats", "succeededFrames")),
        ("TOTAL", _stats("layerStats", "totalFrames")),
        ("ID", lambda la: la.get("id")),
    ),
    "launched": (
        ("ID", lambda j: j.get("id")),
        ("NAME", lambda j: j.get("name")),
    ),
    "hosts": (
        ("NAME", lambda h: h.get("name")),
        ("STATE", lambda h: h.get("state")),
        ("LOCK", lambda h: h.get("lockState")),
        ("ALLOC", lambda h: h.get("allocName")),
        ("CORES", lambda h: f"{h.get('idleCores', '')}/{h.get('cores', '')}"),
        ("ID", lambda h: h.get("id")),
    ),
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_table(stream: TextIO, kind: str, items: Sequence[Mapping[str, Any]]) -> None:
    """Items as aligned columns under a header line."""
    columns = _TABLES[kind]
    rows = [[name for name, _ in columns]]
    rows.extend([_cell(get(item)) for _, get in columns] for item in items)
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        stream.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        stream.write("\n")


def _common(*, request_timeout: bool = True) -> argparse.ArgumentParser:
    """The options every command takes (C{wait} has a --timeout of its own)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"gateway base URL [{URL_ENV}, {DEFAULT_URL}]",
    )
    common.add_argument("--token", default=argparse.SUPPRESS, help=f"bearer token [{TOKEN_ENV}]")
    common.add_argument(
        "--token-file", default=argparse.SUPPRESS, help=f"file holding the token [{TOKEN_FILE_ENV}]"
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the JSON answer"
    )
    if request_timeout:
        common.add_argument(
            "--timeout", type=float, default=argparse.SUPPRESS, help="seconds per request [60]"
        )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="opencue-gw",
        parents=[common],
        description="Talk to an OpenCue REST gateway.",
        epilog="Exit status: 0 ok, 1 other error, 2 usage or invalid argument, "
        "3 authentication/permission, 4 not found, 5 unavailable, 6 wait timed out.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser("token", parents=[common], help="mint a token")
    token.add_argument(
        "--secret-file", help="file holding the HMAC secret [JWT_SECRET_FILE, JWT_SECRET]"
    )
    token.add_argument("--sub", required=True, help="who the token is for")
    token.add_argument("--role", help="role claim, e.g. viewer or admin")
    token.add_argument("--ttl", default="1h", help="lifetime such as 30m or 8h [1h]")
    token.add_argument("--algorithm", default="HS256", choices=["HS256", "HS384", "HS512"])

    call = commands.add_parser("call", parents=[common], help="call any RPC")
    call.add_argument("rpc", help="e.g. job.JobInterface/GetJobs")
    call.add_argument("body", nargs="?", default="{}", help="JSON request body, - for stdin")

    submit = commands.add_parser(
        "submit",
        parents=[common],
        help="launch a job described in a JSON or YAML file",
        description="Launch the job a JSON (or .yaml/.yml) job description file describes "
        "and print the launched job's id and name. - reads JSON from stdin.",
    )
    submit.add_argument("file", help="job description: .json, .yaml or .yml; - for stdin")
    submit.add_argument(
        "--dry-run", action="store_true", help="print the job-spec XML; launch nothing"
    )

    commands.add_parser("shows", parents=[common], help="list shows")

    jobs = commands.add_parser("jobs", parents=[common], help="list jobs")
    jobs.add_argument("--show", action="append", help="show name (repeatable)")
    jobs.add_argument("--user", action="append", help="owner (repeatable)")
    jobs.add_argument("--name", action="append", help="exact job name (repeatable)")
    jobs.add_argument("--match", action="append", help="substring of the job name")
    jobs.add_argument("--all", action="store_true", help="include finished jobs")

    job = commands.add_parser("job", parents=[common], help="show one job")
    job.add_argument("job", help="job id or name")

    for name, text in (("frames", "list a job's frames"), ("retry", "retry a job's frames")):
        sub = commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("job", help="job id or name")
        sub.add_argument("--state", action="append", help="frame state, e.g. RUNNING, DEAD")
        sub.add_argument("--layer", action="append", help="layer name (repeatable)")
        sub.add_argument("--range", dest="frame_range", help="frame range such as 1-100")

    layers = commands.add_parser("layers", parents=[common], help="list a job's layers")
    layers.add_argument("job", help="job id or name")

    hosts = commands.add_parser("hosts", parents=[common], help="list hosts")
    hosts.add_argument("--alloc", action="append", help="allocation name (repeatable)")
    hosts.add_argument("--state", action="append", help="hardware state, e.g. UP")

    wait = commands.add_parser(
        "wait",
        parents=[_common(request_timeout=False)],
        help="wait for a job to finish",
        description="Exit 0 when every frame succeeded, 1 with dead frames, 5 when the "
        "gateway or Cuebot is unavailable, 6 on timeout.",
    )
    wait.add_argument("job", help="job id or name")
    wait.add_argument(
        "--timeout", dest="wait_for", default="1h", help="how long to wait, e.g. 30m or 2h [1h]"
    )

    watch = commands.add_parser("watch", parents=[common], help="print farm events as they come")
    watch.add_argument("--show", action="append", help="show name (repeatable)")
    watch.add_argument("--job", action="append", help="job id (repeatable)")
    watch.add_argument("--types", help="job,layer,frame,host [job; with --job also layer,frame]")
    watch.add_argument("--states", help="only objects in these states, e.g. RUNNING,DEAD")
    watch.add_argument("--max-events", type=int, help="stop after this many events")

    for name in ("kill", "pause", "resume"):
        sub = commands.add_parser(name, parents=[common], help=f"{name} a job")
        sub.add_argument("job", help="job id or name")
        if name == "kill":
            sub.add_argument("--reason", help="why, recorded by Cuebot")
    return parser


def _option(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _mint(args: argparse.Namespace, environ: Mapping[str, str], stdout: TextIO) -> int:
    path = args.secret_file or environ.get("JWT_SECRET_FILE")
    if path:
        try:
            secret = Path(path).read_bytes().strip()
        except OSError as error:
            raise _Usage(f"cannot read {path}: {error.strerror}") from None
    elif environ.get("JWT_SECRET"):
        secret = environ["JWT_SECRET"].encode("utf-8")
    else:
        raise _Usage("no secret: pass --secret-file or set JWT_SECRET_FILE or JWT_SECRET")
    if not secret:
        raise _Usage(f"{path} is empty")
    try:
        ttl = parse_duration(args.ttl)
    except ValueError as error:
        raise _Usage(f"--ttl: {error}") from None
    token = mint_token(
        secret, sub=args.sub, role=args.role, now=time.time(), ttl=ttl, algorithm=args.algorithm
    )
    stdout.write(token + "\n")
    return EXIT_OK


def _load_description(name: str, stdin: TextIO) -> Any:
    """The job description in file C{name} (C{-}: stdin), JSON or, by suffix, YAML."""
    try:
        text = stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as error:
        raise _Usage(f"cannot read {name}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise _Usage(f"{name} is not UTF-8 text") from None
    if Path(name).suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise _Usage("reading YAML needs PyYAML (pip install pyyaml)") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise _Usage(f"{name} is not YAML: {error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise _Usage(f"{name} is not JSON: {error}") from None


def _submit(args: argparse.Namespace, client: GatewayClient, stdin: TextIO) -> tuple[str, Any]:
    description = _load_description(args.file, stdin)
    if not isinstance(description, dict):
        raise _Usage(f"{args.file} must hold one job description (an object)")
    if args.dry_run:
        return "spec", client.submit_job(description, dry_run=True)
    return "launched", client.submit_job(description)["jobs"]


def _job_id(client: GatewayClient, job: str) -> str:
    """Accept a job's id or its name; names are looked up once."""
    if _UUID.match(job):
        return job
    found = client.find_job(job)
    return str(found["job"]["id"])


def _wait(args: argparse.Namespace, client: GatewayClient, out: TextIO) -> int:
    """C{wait}: block until the job finishes; the exit status says how it ended."""
    try:
        limit = parse_duration(args.wait_for)
    except ValueError as error:
        raise _Usage(f"--timeout: {error}") from None
    job_id = _job_id(client, args.job)
    try:
        answer = client.wait_for_job(job_id, limit)
    except GatewayClientError as error:
        if error.http_status == 408:
            out.write(f"opencue-gw: {error.message}\n")
            return EXIT_TIMEOUT
        raise
    counts = answer.get("frameCounts") or {}
    done = counts.get("succeeded", 0) + counts.get("eaten", 0)
    ok = counts.get("dead", 0) == 0 and done == counts.get("total", 0)
    if _option(args, "json"):
        out.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
    else:
        name = (answer.get("job") or {}).get("name", job_id)
        out.write(
            f"{name}: finished, {counts.get('succeeded', 0)} succeeded, "
            f"{counts.get('dead', 0)} dead, {counts.get('eaten', 0)} eaten "
            f"of {counts.get('total', 0)} frames\n"
        )
    return EXIT_OK if ok else EXIT_FAILED_FRAMES


def _watch(args: argparse.Namespace, client: GatewayClient, out: TextIO) -> int:
    """C{watch}: one line per event (or its JSON) until interrupted."""
    seen = 0
    as_json = bool(_option(args, "json"))
    try:
        for event in client.events(
            show=args.show, job=args.job, types=args.types, states=args.states
        ):
            if as_json:
                record = {"id": event.id, "event": event.type, "data": event.data}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                out.write(describe(event) + "\n")
            out.flush()
            seen += 1
            if args.max_events is not None and seen >= args.max_events:
                break
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _run(args: argparse.Namespace, client: GatewayClient, stdin: TextIO) -> tuple[str | None, Any]:
    """Do the command; the table kind to print (C{None} for JSON) and the result."""
    command = args.command
    if command == "call":
        body = stdin.read() if args.body == "-" else args.body
        try:
            json.loads(body)
        except ValueError as error:
            raise _Usage(f"the body is not JSON: {error}") from None
        return None, client.call(args.rpc, body)
    if command == "submit":
        return _submit(args, client, stdin)
    if command == "shows":
        return "shows", client.shows()
    if command == "jobs":
        found = client.jobs(
            args.show, user=args.user, name=args.name, match=args.match, include_finished=args.all
        )
        return "jobs", found
    if command == "hosts":
        return "hosts", client.hosts(alloc=args.alloc, state=args.state)
    job_id = _job_id(client, args.job)
    if command == "job":
        return "jobs", [client.job(job_id)]
    if command == "layers":
        return "layers", client.layers(job_id)
    if command == "frames":
        found = client.frames(
            job_id, state=args.state, layer=args.layer, frame_range=args.frame_range
        )
        return "frames", found
    if command == "retry":
        client.retry_frames(
            job_id, state=args.state, layer=args.layer, frame_range=args.frame_range
        )
        return None, {"retried": job_id}
    if command == "kill":
        return None, {"killed": job_id, **client.kill_job(job_id, args.reason)}
    if command == "pause":
        return None, {"paused": job_id, **client.pause_job(job_id)}
    return None, {"resumed": job_id, **client.resume_job(job_id)}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    env = os.environ if environ is None else environ
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = _parser().parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        if args.command == "token":
            return _mint(args, env, out)
        client = GatewayClient(
            _option(args, "url"),
            _option(args, "token"),
            token_file=_option(args, "token_file"),
            timeout=_option(args, "timeout") or 60.0,
            environ=env,
        )
        if args.command == "wait":
            return _wait(args, client, out)
        if args.command == "watch":
            return _watch(args, client, out)
        kind, result = _run(args, client, stdin if stdin is not None else sys.stdin)
    except _Usage as error:
        err.write(f"opencue-gw: {error}\n")
        return EXIT_USAGE
    except GatewayClientError as error:
        err.write(f"opencue-gw: {error}\n")
        return exit_code_for(error)
    if kind is None or _option(args, "json"):
        out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    elif kind == "spec":
        out.write(result["spec"] + "\n")
    else:
        write_table(out, kind, result)
    return EXIT_OK
