"""``extauthz mint``: the command line. ``add_arguments`` and ``run`` are what the top-level
``extauthz`` CLI wires in as its ``mint`` subcommand; ``python -m extauthz.mint`` uses them too.

Exit codes: 0 done (or stopped by SIGTERM/SIGINT); 1 ``--once`` and a credential failed;
2 the configuration or the output directory is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from extauthz.errors import ConfigError
from extauthz.logs import setup_logging
from extauthz.mint.errors import SinkError
from extauthz.mint.http import build_app, parse_address, start_http
from extauthz.mint.plan import MintPlan, load_plan
from extauthz.mint.proxy import proxy_from_environ
from extauthz.mint.refresher import Refresher
from extauthz.mint.sinks import prepare_directory
from extauthz.mint.sources import OidcTokens
from extauthz.mint.transport import HttpClient, make_ssl_context

log = logging.getLogger("extauthz.mint")

DEFAULT_HTTP_ADDRESS = "0.0.0.0:9193"
OFF = ("", "none", "off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mint`` options to ``parser``."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="LiteLLM config.yaml whose model_list holds the upstream credentials "
        "(default: $EXTAUTHZ_CONFIG)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        required=True,
        help="directory for NAME.aws_credentials and NAME.sds.yaml (shared with Envoy)",
    )
    parser.add_argument(
        "--http-address",
        metavar="HOST:PORT",
        default=DEFAULT_HTTP_ADDRESS,
        help="serve /healthz /readyz /metrics /status here ('none' to turn off; "
        f"default {DEFAULT_HTTP_ADDRESS})",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="mint every credential once and exit; non-zero if any failed (init containers, CI)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (JSON lines on stderr)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the minter as ``args`` say; returns the process exit code."""
    setup_logging(args.log_level)
    config = args.config or os.environ.get("EXTAUTHZ_CONFIG")
    if not config:
        log.error("no configuration: pass --config FILE or set EXTAUTHZ_CONFIG")
        return 2
    address = None if args.once or args.http_address.lower() in OFF else args.http_address
    try:
        plan = load_plan(config, os.environ)
        ssl_context = make_ssl_context(plan.settings.ca_file)
        proxy = proxy_from_environ(os.environ)
        if address is not None:
            parse_address(address)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(f"{exc.source}: {problem}", extra={"config": exc.source})
        return 2
    except ValueError as exc:
        log.error(f"--http-address: {exc}")
        return 2
    for warning in plan.warnings:
        log.warning(f"{config}: {warning}", extra={"config": config})
    if proxy is not None:
        log.info(
            "https calls go through a proxy",
            extra={"proxy": str(proxy), "direct": [str(r) for r in proxy.rules]},
        )
    out_dir = Path(args.out)
    try:
        prepare_directory(out_dir)
    except SinkError as exc:
        log.error(str(exc))
        return 2
    http = HttpClient(ssl_context, plan.settings.timeout_seconds, proxy=proxy)
    return asyncio.run(_main(plan, http, out_dir, address, once=args.once))


async def _main(
    plan: MintPlan, http: HttpClient, out_dir: Path, address: str | None, *, once: bool
) -> int:
    tokens = OidcTokens(http, os.environ, time.time)
    refresher = Refresher(
        plan.credentials,
        out_dir=out_dir,
        http=http,
        tokens=tokens,
        attempt_timeout=3 * plan.settings.timeout_seconds,
    )
    log.info(
        "minting credentials",
        extra={"credentials": sorted(refresher.states), "out": str(out_dir), "once": once},
    )
    runner = None
    try:
        if once:
            ok = await refresher.run_once()
            failed = sorted(s.key for s in refresher.states.values() if not s.minted)
            log.info("done", extra={"ok": ok, "failed": failed})
            return 0 if ok else 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if address is not None:
            try:
                runner, bound = await start_http(build_app(refresher, time.time), address)
            except OSError as exc:
                log.error(f"--http-address {address}: cannot listen ({exc.strerror or exc})")
                return 2
            log.info("http listening", extra={"address": bound})
        await refresher.run(stop)
        log.info("stopped")
        return 0
    finally:
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await http.close()
