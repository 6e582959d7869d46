"""The command line: ``python -m errand worker MODULE:CLIENT`` and ``python -m errand bench``.

``worker`` imports the ``Client`` at ``MODULE:ATTRIBUTE`` (the current directory is on the
import path) and runs its tasks until SIGTERM or SIGINT (a second one ends the drain at
once). It logs to stderr in ``errand.logs.DEFAULT_FORMAT`` (every line with the task and user
it was logged for) and prints its statistics as one JSON line on stdout when it exits (0 after
a drain; 1 when errand refused its registration, or a loop of the worker failed).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from .client import Client
from .errors import ErrandError
from .logs import configure_logging
from .worker import Worker

logger = logging.getLogger("errand")


def load_client(target: str) -> Client:
    """The ``Client`` at ``module:attribute`` (attribute may be dotted)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"errand: expected MODULE:ATTRIBUTE, e.g. myapp.tasks:client, not {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    value: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    if not isinstance(value, Client):
        raise SystemExit(f"errand: {target} is a {type(value).__name__}, not an errand.Client")
    return value


async def _work(client: Client, args: argparse.Namespace) -> int:
    worker = Worker(
        client,
        concurrency=args.concurrency,
        queues=args.queues,
        drain_timeout=args.drain_timeout,
        lease_s=args.lease,
    )
    try:
        stats = await worker.run_until_signalled()
    except ErrandError as e:
        logger.error("the worker stopped on an error: %s", e)
        print(json.dumps(worker.stats.as_dict()), flush=True)
        return 1
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


def _queues(text: str) -> list[str]:
    return [q.strip() for q in text.split(",") if q.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m errand", description="errand's Python SDK")
    commands = parser.add_subparsers(dest="command", required=True)

    work = commands.add_parser("worker", help="run a client's tasks")
    work.add_argument("target", help="MODULE:ATTRIBUTE of an errand.Client, e.g. myapp.tasks:client")
    work.add_argument("--concurrency", type=int, default=16, help="tasks at once (16)")
    work.add_argument("--queues", type=_queues, default=None, help="only these queues, comma-separated")
    work.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish on SIGTERM (30)")
    work.add_argument("--lease", type=float, default=30.0, help="lease in seconds, 2-600 (30)")
    work.add_argument("--log-level", default="INFO", help="logging level (INFO)")

    bench = commands.add_parser("bench", help="the no-op benchmark against $ERRAND_URL")
    bench.add_argument("--jobs", type=int, default=2000)
    bench.add_argument("--concurrency", type=int, default=64)
    bench.add_argument("--in-flight", type=int, default=64, help="submissions at once (64)")

    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper() if args.command == "worker" else logging.WARNING)
    if args.command == "worker":
        return asyncio.run(_work(load_client(args.target), args))

    from .bench import run_bench

    try:
        report = asyncio.run(run_bench(args.jobs, args.concurrency, in_flight=args.in_flight))
    except ErrandError as e:
        print(f"errand bench: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
