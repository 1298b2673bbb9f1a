"""The hotreload command: serve a gitsheets data repository from memory and reload it
when its branch moves (serve), try it on sample data (demo), and the tools around it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from hotreload import __version__, logs
from hotreload.config import ConfigError, Settings

log = logging.getLogger("hotreload")


def _fail(message: str, code: int = 2) -> int:
    print(f"hotreload: error: {message}", file=sys.stderr)
    return code


def _check_listen_options(host: str, port: int, threads: int) -> str | None:
    """What is wrong with --host/--port/--threads, in one line, or None."""
    if not 0 <= port <= 65535:
        return f"--port {port}: must be from 0 to 65535 (0 picks a free port)"
    if threads < 1:
        return f"--threads {threads}: must be 1 or more"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"--host {host}: cannot be resolved ({exc}); use an address such as 127.0.0.1 or 0.0.0.0"
    return None


def _serve(settings: Settings, host: str, port: int, threads: int, banner: str | None = None) -> int:
    """Bind the port and serve at once (503 ``starting`` while the data loads on another
    thread), then the app; stop on SIGTERM or SIGINT (hotreload/server.py)."""
    from hotreload.server import MAX_BODY, Gate, make_server

    problem = _check_listen_options(host, port, threads)
    if problem:
        return _fail(problem)
    started = time.perf_counter()
    gate = Gate()
    try:
        server = make_server(gate, host, port, threads, settings.http_connection_limit,
                             settings.http_idle_timeout_s, MAX_BODY, bool(settings.trusted_proxies))
    except OSError as exc:
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port")
    bound = int(server.effective_port)  # waitress gives a str
    log.info("listening on %s:%s; answering 503 until the data is loaded", host, bound)
    outcome: dict[str, Any] = {}
    handover = threading.Lock()  # the runtime goes to the main thread, or is closed by the start's

    def start() -> None:
        from hotreload.api.app import create_app  # after the bind: importing the app takes ~0.5 s
        from hotreload.service.runtime import StartupError, boot

        try:
            runtime = boot(settings, listen_port=bound, phase=gate.starting)
            with handover:
                if "ended" in outcome:  # the loop ended while we started: nobody will close it
                    runtime.close()
                    return
                outcome["runtime"] = runtime
            gate.app = create_app(runtime, threads)
        except (ConfigError, StartupError) as exc:
            outcome["error"] = str(exc)
        except BaseException as exc:
            log.exception("start-up failed")
            outcome["error"] = f"start-up failed: {exc}"
        if "error" in outcome:
            server.stop()
            return
        log.info("serving %s on http://%s:%s (ready in %.0f ms)", runtime.branch, host, bound,
                 (time.perf_counter() - started) * 1000,
                 extra={"servedCommit": runtime.holder.current.commit, "threads": threads})
        if banner:
            print(banner, file=sys.stderr, flush=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d): health answers 503 now, the listener closes in %g s",
                 signum, settings.shutdown_drain_s)
        gate.stopping = True
        server.stop(settings.shutdown_drain_s if signum == signal.SIGTERM else 0.0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=start, name="start", daemon=True).start()
    try:
        server.run()
    except (OSError, ValueError) as exc:
        if not gate.stopping:
            log.error("the server's listening loop failed: %s; stopping, with exit status 1, so that a "
                      "supervisor restarts the service", exc, exc_info=True)
    else:
        if not gate.stopping and "error" not in outcome:
            log.error("the server's listening loop ended by itself; stopping, with exit status 1")
    finally:
        with handover:
            outcome["ended"] = True
        if "runtime" in outcome:
            outcome["runtime"].close()
    if "error" in outcome:
        return _fail(outcome["error"])
    return 0 if gate.stopping else 1


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    logging.getLogger().setLevel(settings.log_level)
    return _serve(settings, args.host, args.port, args.threads)


def cmd_corpus(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from simulator import corpus

    if os.path.exists(args.out) and os.listdir(args.out):
        return _fail(f"--out {args.out} already exists; choose a new path or delete it")
    started = time.perf_counter()
    records = corpus.make_records(args.records, args.seed)
    with tqdm(total=sum(map(len, records.values())), unit="rec", desc="records", file=sys.stderr) as bar:
        tree = corpus.files(records, args.seed, args.styles, progress=bar.update)
    print("writing pack ...", file=sys.stderr, flush=True)
    with tqdm(total=args.history, unit="commit", desc="history", file=sys.stderr, disable=not args.history) as bar:
        try:
            commit = corpus.write(args.out, tree, args.branch, records["people"], args.history, args.seed,
                                  progress=bar.update)
        except RuntimeError as exc:
            return _fail(str(exc))
    counts = ", ".join(f"{len(rows)} {sheet}" for sheet, rows in records.items())
    history = f" after {args.history} one-record commits" if args.history else ""
    print(f"{args.out}: {sum(map(len, records.values()))} records ({counts}){history} on {args.branch} at "
          f"{commit[:12]} in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hotreload import demo

    first_run = not os.path.exists(os.path.join(args.dir, "origin.git"))
    if first_run:
        print(f"making the demo data ({args.records} records) in {args.dir} ...", file=sys.stderr)
    with tqdm(total=args.records, unit="rec", desc="records", file=sys.stderr, disable=not first_run) as bar:
        d = demo.ensure(args.dir, args.records, progress=bar.update)
    if args.push_change:
        slug, commit = demo.push_change(d)
        print(f"committed project {slug} to the demo origin at {commit[:12]}")
        print("now tell the server (it shows the project after this):")
        print(_reload_curl(args.port, d.secret, commit))
        return 0
    base = f"http://127.0.0.1:{args.port}"
    banner = "\n".join([
        "",
        f"hotreload demo: serving {d.clone} (origin {d.origin})",
        f"  reload secret: {d.secret}",
        f"  write token:   {d.write_token}",
        "try:",
        f"  curl -s '{base}/api/projects?q=transit&perPage=3'",
        f"  curl -s {base}/api/health",
        f"  {_this_command()} demo --dir {args.dir} --port {args.port} --push-change   # in another terminal",
        "  " + _reload_curl(args.port, d.secret, None),
        f"  curl -s -X POST {base}/api/projects -H 'Authorization: Bearer {d.write_token}' "
        "-H 'Content-Type: application/json' -d '{\"slug\": \"my-transit-app\", \"title\": \"My Transit App\"}'",
        "",
    ])
    return _serve(d.settings(), args.host, args.port, args.threads, banner)


def _this_command() -> str:
    """How this command was started, to print lines that run it again: the script's path
    as typed (``.venv/bin/hotreload`` under make), ``hotreload`` when found on the PATH."""
    script = sys.argv[0]
    if os.path.basename(script) != "hotreload":
        return f"{sys.executable} -m hotreload.cli"
    return "hotreload" if os.sep not in script else script


def _reload_curl(port: int, secret: str, commit: str | None) -> str:
    body = f" -d '{{\"commitHash\": \"{commit}\"}}'" if commit else ""
    return (f"curl -s -X POST http://127.0.0.1:{port}/api/_internal/reload-data "
            f"-H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json'{body}")


def cmd_upkeep(args: argparse.Namespace) -> int:
    from hotreload.git.repo import GitRepo, NotABareRepository
    from hotreload.git.upkeep import PRUNE_GRACE_S, run_upkeep

    path = args.repo or os.environ.get("CFP_DATA_REPO_PATH", "").strip()
    if not path:
        return _fail("name the bare clone with --repo PATH (or set CFP_DATA_REPO_PATH)")
    try:
        repo = GitRepo(path)
    except NotABareRepository as exc:
        return _fail(f"--repo: {exc}")
    try:
        result = run_upkeep(repo, grace_s=PRUNE_GRACE_S, force=not args.auto)
    finally:
        repo.close()
    print(f"{path}: packed {result.packed} loose objects, pruned {result.pruned} already packed, "
          f"commit-graph of {result.graph_commits} commits, in {result.duration_ms:.0f} ms")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator.runner import main as simulate_main

    return simulate_main(args.scenarios, args.json, verbose=args.verbose)


class _Help(argparse.HelpFormatter):
    """Each option's default after its help, once, and only where there is one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or any(action.default is x for x in (None, False, argparse.SUPPRESS)) or "default" in text:
            return text
        return f"{text} (default: {action.default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotreload", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"hotreload {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = _Help

    def listen_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
        command.add_argument("--port", type=int, default=8080, help="TCP port, 0-65535 (0 picks a free one)")
        command.add_argument("--threads", type=int, default=8, help="waitress worker threads, 1 or more")

    serve = sub.add_parser("serve", help="serve the data repository named by the CFP_* env vars",
                           description="Serve the repository named by CFP_DATA_REPO_PATH (see "
                                       "docs/configuration.md for every CFP_* variable).",
                           formatter_class=fmt)
    listen_options(serve)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="serve an embedded sample repository (made on first run)",
                          description="Make a sample data repository (an origin and the service's clone) "
                                      "on the first run, print the secret and curl lines to try, and serve "
                                      "it; --push-change, from a second terminal, commits a new project to "
                                      "the origin.", formatter_class=fmt)
    demo.add_argument("--dir", default=".hotreload-demo", help="where the demo origin and clone live")
    demo.add_argument("--records", type=int, default=2000, help="size of the sample corpus (first run)")
    listen_options(demo)
    demo.add_argument("--push-change", action="store_true",
                      help="commit one new project to the demo origin, then exit")
    demo.set_defaults(func=cmd_demo)

    corpus = sub.add_parser("corpus", help="write a synthetic gitsheets repository of N records",
                            description="Write a bare gitsheets repository of N valid records (projects, "
                                        "people, tags, memberships) as one pack, for benchmarks and trials.",
                            formatter_class=fmt)
    corpus.add_argument("--records", type=int, required=True, help="how many records (10 or more)")
    corpus.add_argument("--out", required=True, help="path of the new bare repository (PATH.git)")
    corpus.add_argument("--seed", type=int, default=1, help="random seed (same seed, same corpus)")
    corpus.add_argument("--branch", default="published", help="the branch to write")
    corpus.add_argument("--styles", choices=["flat", "mixed"], default="flat",
                        help="flat: every record as the service writes it; mixed: each in one of three styles, "
                             "the service's, by hand (aligned keys, literal and multi-line strings, comments) "
                             "or with native TOML date-times")
    corpus.add_argument("--history", type=int, default=0, metavar="N",
                        help="then add N one-record commits, as N writes through the API would, "
                             "and pack like git gc (needs the git binary)")
    corpus.set_defaults(func=cmd_corpus)

    upkeep = sub.add_parser(
        "upkeep", help="pack loose objects and rewrite the commit-graph now (safe while serving)",
        description="Pack the clone's loose objects, delete the packed ones, and rewrite the "
                    "commit-graph, as the service does every CFP_DATA_UPKEEP_SECONDS; safe while it serves.",
        formatter_class=fmt)
    upkeep.add_argument("--repo", help="the bare clone (default: $CFP_DATA_REPO_PATH)")
    upkeep.add_argument("--auto", action="store_true",
                        help="only what is due (256+ loose objects, 64+ commits newer than the "
                             "commit-graph), as the service's own runs do; default: everything now")
    upkeep.set_defaults(func=cmd_upkeep)

    simulate = sub.add_parser("simulate", help="run simulator scenarios against a real server",
                              description="Run scripted git histories (simulator/scenarios/*.toml) against "
                                          "a real hotreload serve, check the invariants after every step, "
                                          "and print a report table.", formatter_class=fmt)
    simulate.add_argument("scenarios", nargs="*", help="scenario names or .toml paths (default: all)")
    simulate.add_argument("--json", help="also write a JSON report to this file")
    simulate.add_argument("-v", "--verbose", action="store_true", help="print each step as it runs")
    simulate.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "corpus" and args.records < 10:
        return _fail("--records must be at least 10")
    if args.command == "corpus" and args.history < 0:
        return _fail("--history must be 0 or more")
    logs.configure()
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
