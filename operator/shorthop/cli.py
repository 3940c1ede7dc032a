"""The ``shorthop`` command line: ``run | plan | topology | fake-cluster | node-agent``.

Each subcommand lives in ``shorthop.commands.<name>`` and exposes ``register(subparsers)``, which
adds its parser and sets ``handler`` (``Namespace -> exit status``). Every error shorthop raises on
purpose becomes one line on stderr and exit status 1. The environment is read here and in
``shorthop.settings`` (which ``shorthop run`` calls), nowhere else.
"""

from __future__ import annotations

import argparse
import sys

from shorthop import __version__
from shorthop.commands import fake_cluster, node_agent, plan, run, topology
from shorthop.errors import ShorthopError

SUBCOMMANDS = (run, plan, topology, fake_cluster, node_agent)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="shorthop",
        description="Topology-aware placement of disaggregated LLM inference on Kubernetes.",
    )
    top.add_argument("--version", action="version", version=f"shorthop {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        top.print_help(sys.stderr)
        return 1
    try:
        status: int = handler(args)
    except ShorthopError as exc:
        print(f"shorthop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
