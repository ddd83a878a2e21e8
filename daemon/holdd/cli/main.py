"""The `holdd` command: one function per sub-command, `main(argv) -> int`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from holdd import __version__
from holdd.config.rulefiles import load_rules
from holdd.config.settings import SecretMode, Settings, load_settings
from holdd.core.errors import ConfigError, StoreError
from holdd.core.rules import RuleSet
from holdd.io import logs

#: sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop.
EX_CONFIG = 78
#: Where the unit (systemd/holdd.service) and docs/operations.md put the config.
DEFAULT_CONFIG = "/etc/holdd/holdd.toml"


def _load(
    path: Path, *, secrets: SecretMode = "read", environ: dict[str, str] | None = None
) -> tuple[Settings, RuleSet]:
    settings = load_settings(path, environ, secrets=secrets)
    rules = load_rules(settings.rule_files, settings.tts_max_length)
    return settings, rules


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        print(problem, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from holdd.io.daemon import Daemon

    try:
        settings, rules = _load(Path(args.config))
    except ConfigError as err:
        logs.configure(fmt="auto")
        structlog.get_logger("holdd").error(
            "config_invalid", config=args.config, problems=[str(p) for p in err.problems]
        )
        _print_problems(err)
        return EX_CONFIG
    logs.configure(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets)
    try:
        return asyncio.run(Daemon(settings, rules).run())
    except Exception:
        # Whatever escapes is a bug: one JSON line with the traceback, not
        # Python's text on stderr.
        structlog.get_logger("holdd").exception("holdd_crashed")
        return 1


def cmd_check(args: argparse.Namespace) -> int:
    """Everything `holdd run` would refuse is a problem (exit 1); a credential
    this user cannot see (another user's file, a systemd credential outside
    the unit) is said to be not verified rather than "ok"."""
    environ = None
    if args.credentials:
        # The directory systemd's LoadCredential= reads from (/etc/holdd in
        # docs/operations.md): check what the unit will hand over.
        environ = {**os.environ, "CREDENTIALS_DIRECTORY": args.credentials}
    try:
        settings, rules = _load(Path(args.config), secrets="verify", environ=environ)
    except ConfigError as err:
        _print_problems(err)
        print(f"{len(err.problems)} problem(s) found", file=sys.stderr)
        return 1
    counts = f"{len(rules.rules)} rule(s) in {len(rules.files)} file(s)"
    if settings.unverified:
        for note in settings.unverified:
            print(note)
        print(
            f"{settings.path}: no problem found, {counts}; could not verify "
            f"{len(settings.unverified)} credential(s) from here (above)"
        )
        return 0
    print(f"{settings.path}: ok, {counts}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """The decision trace of one call, from the state database."""
    from holdd.io.store.opening import where
    from holdd.io.store.postgres import PgStore
    from holdd.io.store.sqlite import StateDb

    try:
        settings = load_settings(Path(args.config), read_secrets=False)
    except ConfigError as err:
        _print_problems(err)
        return 1
    store_name = where(settings)
    if settings.state_url is None and not settings.state_path.exists():
        print(f"{settings.state_path}: no state database (has holdd run yet?)", file=sys.stderr)
        return 1
    csid = args.call_session_id
    try:
        if settings.state_url is not None:
            password = settings.state_password
            reader = PgStore.open_reader(
                settings.state_url, password=password.reveal() if password else None
            )
            try:
                entries, claims = reader.trace(csid), reader.claims(csid)
            finally:
                reader.close()
        else:
            with StateDb.open(settings.state_path, readonly=True) as state:
                entries, claims = state.trace(csid), state.claims(csid)
    except StoreError as exc:
        print(f"{store_name}: {exc}", file=sys.stderr)
        return 1
    if not entries and not claims:
        print(
            f"call {csid}: nothing recorded in {store_name} "
            "(unknown call, or pruned after [state] retention)",
            file=sys.stderr,
        )
        return 1
    print(f"call {csid}")
    # A shared store: every instance traces what it saw; say who wrote what.
    several = len({e.instance for e in entries}) > 1
    for entry in entries:
        by = f"  [{entry.instance}]" if several and entry.instance else ""
        print(f"  {_when(entry.at)}  {entry.kind.value:<10}  {_describe(entry.payload)}{by}")
    for claim in claims:
        owner = f" on instance {claim.owner}" if claim.owner else ""
        print(
            f"  claim {claim.action} by rule {claim.rule!r}{owner}:"
            f" {claim.result or 'no result yet'} (claimed {_when(claim.claimed_at)})"
        )
    return 0


def _when(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _describe(payload: Mapping[str, Any]) -> str:
    """One trace entry as an operator reads it."""
    if "change" in payload:
        return (
            f"{payload['change']} (from {payload.get('source')}), "
            f"episode {payload.get('episode')}, state {payload.get('state')}"
        )
    if "trace" in payload:
        tried = []
        for step in payload.get("trace") or []:
            if step.get("matched"):
                tried.append(f"{step['rule']}: matched")
            elif step.get("skipped"):
                tried.append(f"{step['rule']}: skipped ({step['skipped']})")
            else:
                tried.append(
                    f"{step['rule']}: {step.get('failed')} failed (actual {step.get('actual')!r})"
                )
        head = f"rule {payload['rule']} chosen" if payload.get("rule") else "no rule matched"
        if payload.get("error"):
            head = f"rule {payload.get('rule')} cannot act: {payload['error']}"
        ruled_out = payload.get("ruled_out") or 0
        other = "other " if tried else ""
        more = f"; {ruled_out} {other}rule(s) ruled out by the index" if ruled_out else ""
        by = payload.get("ruled_out_by") or {}
        if by:
            # Why no rule matched: the rules not tried, by the [rule.match]
            # key whose list does not hold the call's value.
            more += ": " + ", ".join(
                f"{n['rules']} whose [rule.match] {key} does not list {n['actual']!r}"
                if n.get("actual") is not None
                else f"{n['rules']} by [rule.match] {key} (the call has no {key})"
                for key, n in by.items()
            )
        return head + ("; tried " + "; ".join(tried) if tried else "") + more
    message = payload.get("message") or {}
    mnemonic = f" ({payload['mnemonic']})" if payload.get("mnemonic") else ""
    return (
        f"{payload.get('action')} by rule {payload.get('rule')}: {payload.get('result')}{mnemonic}"
        f", {message.get('type')} {message.get('value')!r}"
    )


def cmd_test(args: argparse.Namespace) -> int:
    from holdd.cli.ruletest import run_tests

    return run_tests([Path(f) for f in args.files], verbose=args.verbose)


def cmd_simulate(args: argparse.Namespace) -> int:
    from holdd.cli.simulate import run_simulation

    return run_simulation(Path(args.config), Path(args.events), start=args.start)


def cmd_sim(args: argparse.Namespace) -> int:
    addresses: list[tuple[str, int]] = []
    for option, value in (("--listen", args.listen), ("--callapi-listen", args.callapi_listen)):
        if value is None:
            continue
        host, _, port = value.rpartition(":")
        if not port.isdigit():
            print(f"{option} {value!r} is not HOST:PORT", file=sys.stderr)
            return 2
        addresses.append((host or "127.0.0.1", int(port)))
    logs.configure(fmt="auto")
    (host, port), *apart = addresses
    callapi_port = apart[0][1] if apart else None
    if apart and apart[0][0] != host:
        print("--callapi-listen must use the host of --listen", file=sys.stderr)
        return 2
    return asyncio.run(_serve_sim(host, port, tuple(args.token), callapi_port))


async def _serve_sim(
    host: str, port: int, tokens: tuple[str, ...], callapi_port: int | None = None
) -> int:
    import signal

    from holdd.sim.server import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(tokens=tokens or ("sim-token",))
    await sim.start(host, port, callapi_port=callapi_port)
    structlog.get_logger("holdd.sim").info(
        "sim_listening",
        callapi_url=sim.callapi_url,
        notify_url=sim.notify_url,
        control_url=f"{sim.url}/control/calls",
        outage_url=f"{sim.url}/control/outage",
    )
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def cmd_uis_template(args: argparse.Namespace) -> int:
    from holdd.cli.uis_template import run_uis_template

    return run_uis_template(Path(args.config), args.url, english=args.english)


def cmd_demo(args: argparse.Namespace) -> int:
    from holdd.cli.demo import run_demo

    return asyncio.run(run_demo(Path(args.config_dir) if args.config_dir else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holdd", description="Puts UIS calls on hold when your rules match."
    )
    parser.add_argument("--version", action="version", version=f"holdd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"the daemon config (default: {DEFAULT_CONFIG})"
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
    run.set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check",
        help="validate the config and every rule file, and what `run` would refuse",
    )
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
    check.add_argument(
        "--credentials",
        metavar="DIR",
        help="check the systemd credentials (access_token, password, webhook_secret) as the"
        " unit's LoadCredential= would load them from DIR, e.g. /etc/holdd",
    )
    check.set_defaults(func=cmd_check)
    test = sub.add_parser(
        "test",
        help="run rule test files (a timeline of notifications -> the holds expected)",
        description="Run rule test files on a virtual clock; the format is in docs/rules.md.",
    )
    test.add_argument("files", nargs="+", metavar="FILE")
    test.add_argument(
        "-v", "--verbose", action="store_true", help="also show the timeline of passing tests"
    )
    test.set_defaults(func=cmd_test)
    simulate = sub.add_parser(
        "simulate",
        help="replay recorded notifications through the rules; never calls the API",
    )
    simulate.add_argument("-c", "--config", required=True, metavar="FILE")
    simulate.add_argument("events", metavar="EVENTS.jsonl")
    simulate.add_argument(
        "--start", metavar="ISO", help="when offset 0 is (default: the first notification_time)"
    )
    simulate.set_defaults(func=cmd_simulate)
    explain = sub.add_parser("explain", help="the decision trace of one call")
    explain.add_argument("-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help)
    explain.add_argument("call_session_id", type=int, metavar="CALL_SESSION_ID")
    explain.set_defaults(func=cmd_explain)
    template = sub.add_parser(
        "uis-template",
        help="print the HTTP notifications to create in the UIS cabinet for this config",
        description="Print, for the config given, the notifications to create in the UIS"
        " (CoMagic, CallGear) cabinet: name, event type, method, URL and the JSON body"
        " template with the webhook secret. Walk-through: docs/uis.md.",
    )
    template.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, metavar="FILE", help=config_help
    )
    template.add_argument(
        "--url", metavar="URL", help="the public URL UIS posts to (your TLS reverse proxy)"
    )
    template.add_argument(
        "--english", action="store_true", help="CallGear's English event type names"
    )
    template.set_defaults(func=cmd_uis_template)
    sim = sub.add_parser("sim", help="run the built-in UIS simulator")
    sim.add_argument("--listen", default="127.0.0.1:8900", metavar="HOST:PORT")
    sim.add_argument(
        "--callapi-listen",
        metavar="HOST:PORT",
        help="serve the Call API on a port of its own (same host), so that an outage"
        ' that refuses connections (POST /control/outage {"kind": "refuse"})'
        " leaves the notification stream up",
    )
    sim.add_argument(
        "--token", action="append", default=[], help="an access token the fake API accepts"
    )
    sim.set_defaults(func=cmd_sim)
    demo = sub.add_parser("demo", help="simulator + daemon with a scripted set of calls")
    demo.add_argument(
        "--config-dir", metavar="DIR", help="default: the demo config shipped with holdd"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code
