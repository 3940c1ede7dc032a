"""``shorthop topology``: what shorthop sees in a cluster snapshot, as a table, JSON or a picture.

Reads a snapshot file (``kubectl get nodes,pods -A -o yaml``) with ``shorthop.snapshotfile``,
builds the per-cycle snapshot with ``placement.snapshot.build`` under a label preset, and prints
``views.summary`` (text or JSON) on stdout; ``--render`` also draws ``views.render``'s
picture and says on stderr where it went. Registered by ``shorthop.cli``. Errors are
:class:`~shorthop.errors.ShorthopError` subclasses, which the CLI turns into one line and exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shorthop import snapshotfile
from shorthop.errors import SpecError
from shorthop.placement import snapshot
from shorthop.topology import levels
from shorthop.views import render, summary

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``topology`` subcommand to the CLI.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers`` returned; the new parser's ``handler`` is
        :func:`run`.
    """
    p = subparsers.add_parser(
        "topology",
        help="summarise (and draw) the GPU topology of a cluster snapshot",
        description=(
            "Read Nodes and Pods saved with `kubectl get nodes,pods -A -o yaml` and show how "
            "shorthop sees them: GPUs per NVLink domain and network domain, free and used, and "
            "the nodes it leaves out and why."
        ),
    )
    p.add_argument(
        "--cluster",
        required=True,
        metavar="SNAPSHOT.yaml",
        help="kubectl output, YAML or JSON ('-': stdin); JSON loads much faster when big",
    )
    p.add_argument(
        "--preset",
        choices=sorted(levels.PRESETS),
        default=levels.DEFAULT_PRESET,
        help=f"network label scheme (default: {levels.DEFAULT_PRESET})",
    )
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="summary format (default: text)"
    )
    p.add_argument(
        "--render", metavar="FILE.png|FILE.svg", help="also draw the topology into this file"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Load, summarise, print and optionally draw; returns the exit status (0).

    Raises
    ------
    SnapshotError
        The snapshot file cannot be read.
    SpecError
        ``--render`` has an unknown extension or cannot be written.
    """
    target: str | None = args.render
    if target is not None and Path(target).suffix.lower() not in render.FORMATS:
        raise SpecError(
            "--render",
            f"{target!r} has an unknown extension; use a .png or .svg file name",
        )
    nodes, pods = snapshotfile.load_objects(args.cluster)
    snap = snapshot.build(nodes, pods, levels.preset(args.preset))
    result = summary.summarize(snap)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(result.to_text())
    if target is not None:
        try:
            drawing = render.render(snap, target)
        except OSError as exc:
            raise SpecError("--render", f"cannot write {target} ({exc.strerror or exc})") from None
        how = "one bar per domain" if drawing.aggregated else "every node"
        width, height = render.pixel_size(drawing, target)
        print(
            f"wrote {target} ({width}x{height}, {how})",
            file=sys.stderr,
        )
    return 0
