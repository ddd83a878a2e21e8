"""The `holdd` command: one function per sub-command, `main(argv) -> int`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from holdd import __version__, logs
from holdd.config import Settings, load_settings
from holdd.errors import ConfigError
from holdd.rules import RuleSet, load_rules

#: sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop.
EX_CONFIG = 78


def _load(path: Path) -> tuple[Settings, RuleSet]:
    settings = load_settings(path)
    rules = load_rules(settings.rule_files, settings.tts_max_length)
    return settings, rules


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        print(problem, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from holdd.service import Daemon

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
    return asyncio.run(Daemon(settings, rules).run())


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings, rules = _load(Path(args.config))
    except ConfigError as err:
        _print_problems(err)
        print(f"{len(err.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{settings.path}: ok, {len(rules.rules)} rule(s) in {len(rules.files)} file(s)")
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"--listen {args.listen!r} is not HOST:PORT", file=sys.stderr)
        return 2
    logs.configure(fmt="auto")
    return asyncio.run(_serve_sim(host or "127.0.0.1", int(port), tuple(args.token)))


async def _serve_sim(host: str, port: int, tokens: tuple[str, ...]) -> int:
    import signal

    from holdd.sim.server import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(tokens=tokens or ("sim-token",))
    await sim.start(host, port)
    structlog.get_logger("holdd.sim").info(
        "sim_listening",
        callapi_url=sim.callapi_url,
        notify_url=sim.notify_url,
        control_url=f"{sim.url}/control/calls",
    )
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from holdd.demo import run_demo

    return asyncio.run(run_demo(Path(args.config_dir) if args.config_dir else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holdd", description="Puts UIS calls on hold when your rules match."
    )
    parser.add_argument("--version", action="version", version=f"holdd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", required=True, metavar="FILE")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate the config and every rule file")
    check.add_argument("-c", "--config", required=True, metavar="FILE")
    check.set_defaults(func=cmd_check)
    sim = sub.add_parser("sim", help="run the built-in UIS simulator")
    sim.add_argument("--listen", default="127.0.0.1:8900", metavar="HOST:PORT")
    sim.add_argument(
        "--token", action="append", default=[], help="an access token the fake API accepts"
    )
    sim.set_defaults(func=cmd_sim)
    demo = sub.add_parser("demo", help="simulator + daemon with a scripted set of calls")
    demo.add_argument("--config-dir", metavar="DIR", help="default: config/demo of the checkout")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code
