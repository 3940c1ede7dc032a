"""``shorthop fake-cluster``: print a made-up GPU cluster as ``kubectl get -o yaml`` would.

Generates Node manifests (GB200 NVL72 racks, HGX units, L40S nodes) with GPU Feature Discovery and
network labels in a chosen preset, optionally with background pods that occupy a share of the
GPUs, and writes them as one ``List``. With ``--dra``, the chosen kinds of node publish their GPUs
through Dynamic Resource Allocation instead of the device plugin: the List then also holds each
such node's ResourceSlice (the NVIDIA DRA driver's format), the ``gpu.nvidia.com`` DeviceClass,
and, with ``--occupancy``, allocated ResourceClaims with the background pods that use them.
The output feeds ``shorthop topology``/``shorthop plan``,
kwok and the demo. Registered by ``shorthop.cli``; the manifests come from
``shorthop.topology.fake``. Flag problems raise :class:`~shorthop.errors.SpecError` naming the
flag.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from shorthop.errors import SpecError
from shorthop.topology import fake, labels, levels

__all__ = ["register", "run"]

_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
HGX_PRODUCTS = ("h100", "h200", "a100")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fake-cluster`` subcommand to the CLI.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers`` returned; the new parser's ``handler`` is
        :func:`run`.
    """
    p = subparsers.add_parser(
        "fake-cluster",
        help="print a made-up GPU cluster (Nodes and Pods) as YAML",
        description=(
            "Write Nodes (and optionally background Pods) of a made-up GPU cluster as one "
            "List, as `kubectl get nodes,pods -A -o yaml` prints it."
        ),
    )
    shape = p.add_argument_group("cluster shape")
    shape.add_argument("--nvl72-racks", type=int, default=0, metavar="N", help="GB200 NVL72 racks")
    shape.add_argument(
        "--trays-per-rack",
        type=int,
        default=18,
        metavar="N",
        help="compute trays (4 GPUs each) per NVL72 rack (default: 18)",
    )
    shape.add_argument("--hgx-units", type=int, default=0, metavar="N", help="HGX scalable units")
    shape.add_argument(
        "--nodes-per-unit",
        type=int,
        default=32,
        metavar="N",
        help="8-GPU HGX nodes per scalable unit (default: 32)",
    )
    shape.add_argument(
        "--hgx-product", choices=HGX_PRODUCTS, default="h100", help="HGX GPU (default: h100)"
    )
    shape.add_argument(
        "--l40s-nodes", type=int, default=0, metavar="N", help="4-GPU L40S PCIe nodes"
    )
    p.add_argument(
        "--preset",
        choices=sorted(levels.PRESETS),
        default=levels.DEFAULT_PRESET,
        help=f"network label scheme (default: {levels.DEFAULT_PRESET})",
    )
    p.add_argument(
        "--dra",
        default="",
        metavar="KINDS",
        help=(
            "node kinds whose GPUs the NVIDIA DRA driver publishes (no nvidia.com/gpu resource): "
            f"a comma-separated subset of {','.join(fake.DRA_KINDS)}, or 'all' (default: none)"
        ),
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--occupancy",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of GPUs taken by background pods, 0..1 (default: 0, no pods)",
    )
    p.add_argument(
        "--output", "-o", metavar="FILE", default="-", help="write here (default: stdout)"
    )
    p.set_defaults(handler=run)


def shape_from(args: argparse.Namespace) -> fake.ClusterShape:
    """Validate the flags and turn them into a :class:`~shorthop.topology.fake.ClusterShape`.

    Raises
    ------
    SpecError
        A count is negative, a per-unit size is below 1, or no node would be generated.
    """
    counts = {
        "--nvl72-racks": args.nvl72_racks,
        "--hgx-units": args.hgx_units,
        "--l40s-nodes": args.l40s_nodes,
    }
    for flag, value in counts.items():
        if value < 0:
            raise SpecError(flag, f"must be 0 or more, got {value}")
    for flag, value in (
        ("--trays-per-rack", args.trays_per_rack),
        ("--nodes-per-unit", args.nodes_per_unit),
    ):
        if value < 1:
            raise SpecError(flag, f"must be 1 or more, got {value}")
    dra = {k.strip() for k in str(args.dra).split(",") if k.strip()}
    if dra == {"all"}:
        dra = set(fake.DRA_KINDS)
    unknown = sorted(dra - set(fake.DRA_KINDS))
    if unknown:
        raise SpecError(
            "--dra",
            f"{', '.join(map(repr, unknown))} is not a node kind; use a comma-separated subset of "
            f"{', '.join(fake.DRA_KINDS)}, or all",
        )
    if not 0.0 <= args.occupancy <= 1.0:
        raise SpecError("--occupancy", f"must be between 0 and 1, got {args.occupancy}")
    total = (
        args.nvl72_racks * args.trays_per_rack
        + args.hgx_units * args.nodes_per_unit
        + args.l40s_nodes
    )
    if total == 0:
        raise SpecError(
            "--nvl72-racks/--hgx-units/--l40s-nodes",
            "the cluster would have no nodes; give at least one, e.g. --hgx-units 1",
        )
    return fake.ClusterShape(
        nvl72_racks=args.nvl72_racks,
        trays_per_rack=args.trays_per_rack,
        hgx_units=args.hgx_units,
        nodes_per_unit=args.nodes_per_unit,
        hgx_product=args.hgx_product,
        l40s_nodes=args.l40s_nodes,
        dra=frozenset(dra),
    )


def run(args: argparse.Namespace) -> int:
    """Generate the cluster and write it; returns the exit status (0).

    Raises
    ------
    SpecError
        A flag is invalid (see :func:`shape_from`) or ``--output`` cannot be written.
    """
    shape = shape_from(args)
    node_objects = fake.nodes(shape, levels.preset(args.preset), seed=args.seed)
    objects: list[dict[str, Any]] = list(node_objects)
    pods: list[dict[str, Any]] = []
    resource_slices = fake.resource_slices(node_objects, seed=args.seed)
    if resource_slices:
        objects += [fake.device_class(), *resource_slices]
    if args.occupancy > 0:
        pods = fake.background_pods(node_objects, args.occupancy, seed=args.seed)
        claimed, claims = fake.background_claims(
            node_objects, resource_slices, args.occupancy, seed=args.seed
        )
        pods += claimed
        objects += [*claims, *pods]
    text = yaml.dump(fake.as_list(objects), Dumper=_DUMPER, sort_keys=False)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise SpecError("--output", f"cannot write {args.output} ({exc.strerror or exc})") from None
    gpus = sum(int(n["metadata"]["labels"][labels.COUNT]) for n in node_objects)
    published = f", {len(resource_slices)} ResourceSlices" if resource_slices else ""
    print(
        f"wrote {len(node_objects)} nodes ({gpus} GPUs){published} and {len(pods)} pods to "
        f"{args.output}",
        file=sys.stderr,
    )
    return 0
