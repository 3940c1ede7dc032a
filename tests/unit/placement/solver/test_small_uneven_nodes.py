"""Small instances whose nodes' GPUs are not uniformly linked (few twin GPUs, so the exhaustive
search may end on its budget): replicas the objective cannot tell apart (same role and shape,
nothing kept, the same paired peers) are enumerated once, not in every order; and the home
starts run here too, their best moved into a state over the whole cluster for refinement and
the search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shorthop.placement import exact, solver
from shorthop.placement import snapshot as snapshots
from shorthop.placement.plan import Plan
from shorthop.placement.request import Pattern, Request, RoleRequest, TrafficEdge
from shorthop.topology import labels

from tests import builders
from tests.unit.placement.test_solver import CONFIG, assert_valid

REAL = Path(__file__).resolve().parents[3] / "fixtures" / "nvidia-smi" / "real"
# An 8-GPU node whose GPU 5 has NVLink to GPUs 0, 1, 2 and 4 (3 and 7 are taken below).
HUB = (
    "\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\n"
    "GPU0\t X \tNV12\tPHB\tNV2\tNV2\tNV18\tSYS\tNV4\n"
    "GPU1\tNV12\t X \tNV4\tNV18\tSYS\tNV1\tNV18\tNODE\n"
    "GPU2\tPHB\tNV4\t X \tNV2\tNV12\tNV4\tNV1\tNV12\n"
    "GPU3\tNV2\tNV18\tNV2\t X \tNV2\tNV18\tPIX\tNV12\n"
    "GPU4\tNV2\tSYS\tNV12\tNV2\t X \tNV2\tNV4\tPXB\n"
    "GPU5\tNV18\tNV1\tNV4\tNV18\tNV2\t X \tPXB\tNV1\n"
    "GPU6\tSYS\tNV18\tNV1\tPIX\tNV4\tPXB\t X \tNV2\n"
    "GPU7\tNV4\tNODE\tNV12\tNV12\tPXB\tNV1\tNV2\t X \n"
)
PAIR = "\tGPU0\tGPU1\nGPU0\t X \tNV12\nGPU1\tNV12\t X \n"


def _node(name: str, text: str, gpus: int, rack: str, block: str) -> dict[str, Any]:
    node = builders.node_object(name, "pcie", gpus, rack=rack, block=block)
    node["metadata"]["annotations"] = {labels.SMI_ANNOTATION: text}
    return node


def _hub_instance() -> tuple[snapshots.ClusterSnapshot, Request]:
    """A DGX-1 (cube mesh: no free GPU there has NVLink to four others), an RTX A6000 pair
    with a third card, the node with a hub GPU, and an NVLink pair; four 1-GPU prefill replicas
    all-to-all with one 1-GPU decode replica: the optimum puts all five on the hub node."""
    nodes = [
        _node("n0", (REAL / "v100x8_dgx1_cubemesh_mlx5_oldlegend.txt").read_text(), 8, "r1", "b1"),
        _node("n1", (REAL / "rtxa6000x3_nvlink_bridge_pair_ansi.txt").read_text(), 3, "r2", "b2"),
        _node("n2", HUB, 8, "r1", "b2"),
        _node("n3", PAIR, 2, "r2", "b2"),
    ]
    pods = [builders.gpu_pod("bg0", "n0", [3, 7]), builders.gpu_pod("bg2", "n2", [3, 7])]
    request = Request(
        roles=(RoleRequest("prefill", 4, 1, 1), RoleRequest("decode", 1, 1, 1)),
        traffic=(TrafficEdge(0, 1, 0.5, Pattern.ALL_TO_ALL),),
        name="hub",
    )
    return snapshots.build(nodes, pods, CONFIG), request


def _solved_at_the_optimum(snap: snapshots.ClusterSnapshot, request: Request) -> Plan:
    """The solver's plan, checked valid and equal in cost to the exact solver's."""
    plan = solver.solve(snap, request)
    assert_valid(snap, request, plan)
    assert plan.cost.key() == exact.solve(snap, request).cost.key()
    return plan


def test_the_search_finds_the_hub_placement_the_heuristics_miss() -> None:
    snap, request = _hub_instance()
    plan = _solved_at_the_optimum(snap, request)
    assert {a.node for a in plan.assignments} == {"n2"}


def _dgx1(name: str, rack: str, block: str) -> dict[str, Any]:
    node = builders.node_object(name, "hgx", 8, rack=rack, block=block)
    node["metadata"]["labels"]["nvidia.com/gpu.product"] = "Tesla-V100-SXM2-32GB"  # cube mesh
    return node


def test_replicas_paired_with_the_same_peer_are_enumerated_once() -> None:
    """Paired traffic, one prefill replica and four decode replicas that all pair with it, on
    two DGX-1 nodes (some GPUs taken): the decode replicas are interchangeable, and the search
    proves the optimum within its budget."""
    nodes = [_dgx1("n0", "r2", "b1"), _dgx1("n1", "r1", "b2")]
    nodes.append(builders.node_object("n2", "pcie", 4, rack="r2", block="b1"))
    pods = [builders.gpu_pod("bg0", "n0", [0, 3, 7]), builders.gpu_pod("bg1", "n1", [6])]
    snap = snapshots.build(nodes, pods, CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 1, 2, 1), RoleRequest("decode", 4, 2, 1)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.PAIRED),),
        name="hub-pairs",
    )
    _solved_at_the_optimum(snap, request)


def test_replicas_with_different_peers_are_still_told_apart() -> None:
    """Two prefill and two decode replicas, paired one to one: the decode replicas have
    different peers, so no order between them is assumed; the plan is still the optimum."""
    snap, _ = _hub_instance()
    paired = Request(
        roles=(RoleRequest("prefill", 2, 1, 1), RoleRequest("decode", 2, 1, 2)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.PAIRED),),
        name="pairs",
    )
    _solved_at_the_optimum(snap, paired)


# An 8-GPU node with NVLink between some pairs only (the other pairs over PCIe or the CPUs).
MIXED = (
    "\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\n"
    "GPU0\t X \tNV1\tNODE\tSYS\tNV2\tNV4\tSYS\tPIX\n"
    "GPU1\tNV1\t X \tPIX\tPHB\tNODE\tPHB\tPHB\tNV4\n"
    "GPU2\tNODE\tPIX\t X \tPHB\tSYS\tNV2\tPXB\tNV18\n"
    "GPU3\tSYS\tPHB\tPHB\t X \tPIX\tNV2\tPHB\tNV4\n"
    "GPU4\tNV2\tNODE\tSYS\tPIX\t X \tSYS\tNV4\tPIX\n"
    "GPU5\tNV4\tPHB\tNV2\tNV2\tSYS\t X \tNV4\tNODE\n"
    "GPU6\tSYS\tPHB\tPXB\tPHB\tNV4\tNV4\t X \tNV18\n"
    "GPU7\tPIX\tNV4\tNV18\tNV4\tPIX\tNODE\tNV18\t X \n"
)


def test_a_deployment_no_node_holds_starts_in_the_block_where_it_fits_best() -> None:
    """Five 2-GPU replicas (all-to-all), 10 GPUs: no node holds them. Block b2 has a DGX-1
    and a PCIe node (its pairs cross the CPUs); block b1 an HGX node and a node with NVLink
    pairs. Greedy alone filled the DGX-1 first and sent the fifth replica to the other block
    (traffic 546.7); the optimum keeps all five in b1 (146.7). The home start in b1 finds it."""
    dgx1 = (REAL / "v100x8_dgx1_cubemesh_mlx5_oldlegend.txt").read_text()
    nodes = [
        _node("n0", dgx1, 8, "r1", "b2"),
        _node("n1", MIXED, 8, "r1", "b1"),
        builders.node_object("n2", "hgx", 8, rack="r1", block="b1"),
        builders.node_object("n3", "pcie", 8, rack="r1", block="b2"),
    ]
    snap = snapshots.build(nodes, [], CONFIG)
    request = Request(
        roles=(RoleRequest("prefill", 3, 1, 2), RoleRequest("decode", 2, 1, 2)),
        traffic=(TrafficEdge(0, 1, 0.5, Pattern.ALL_TO_ALL),),
        name="no-node-holds-it",
    )
    plan = _solved_at_the_optimum(snap, request)
    assert {a.node for a in plan.assignments} <= {"n1", "n2"}


# An 8-GPU node with a random mix of NVLink bonds and PCIe relations, NUMA in halves.
RANDOM8 = (
    "\tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\tCPU Affinity\tNUMA Affinity\n"
    "GPU0\t X \tPIX\tNV18\tNV12\tPHB\tNV2\tSYS\tNV18\tN/A\t0\n"
    "GPU1\tPIX\t X \tPIX\tNV4\tSYS\tNV1\tSYS\tPHB\tN/A\t0\n"
    "GPU2\tNV18\tPIX\t X \tNV1\tPIX\tNODE\tNV18\tNV4\tN/A\t0\n"
    "GPU3\tNV12\tNV4\tNV1\t X \tPHB\tNV18\tSYS\tNV4\tN/A\t0\n"
    "GPU4\tPHB\tSYS\tPIX\tPHB\t X \tNV4\tNV12\tNV4\tN/A\t1\n"
    "GPU5\tNV2\tNV1\tNODE\tNV18\tNV4\t X \tNODE\tNV1\tN/A\t1\n"
    "GPU6\tSYS\tSYS\tNV18\tSYS\tNV12\tNODE\t X \tNODE\tN/A\t1\n"
    "GPU7\tNV18\tPHB\tNV4\tNV4\tNV4\tNV1\tNODE\t X \tN/A\t1\n"
)
TRIANGLE = (
    "\tGPU0\tGPU1\tGPU2\tCPU Affinity\tNUMA Affinity\n"
    "GPU0\t X \tNV18\tNV18\tN/A\t0\n"
    "GPU1\tNV18\t X \tNV18\tN/A\t1\n"
    "GPU2\tNV18\tNV18\t X \tN/A\t1\n"
)


def test_a_paired_hub_is_searched_before_its_spokes() -> None:
    """Two prefill replicas (2 pods x 1 GPU) paired with one decode replica of the same size,
    on four nodes with few twin GPUs: placing the prefill replicas first, with no peer to cost
    them against, the search spent its budget before the optimum (traffic 100 vs 90, all on
    the random node); the decode hub goes first among equal sizes now."""
    dgx1 = (REAL / "v100x8_dgx1_cubemesh_mlx5_oldlegend.txt").read_text()
    nodes = [
        _dgx1("n0", "r2", "b2"),
        _node("n1", TRIANGLE, 3, "r1", "b2"),
        _node("n2", dgx1, 8, "r1", "b1"),
        _node("n3", RANDOM8, 8, "r1", "b2"),
    ]
    request = Request(
        roles=(RoleRequest("prefill", 2, 2, 1), RoleRequest("decode", 1, 2, 1)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.PAIRED),),
        name="hub-first",
    )
    plan = _solved_at_the_optimum(snapshots.build(nodes, [], CONFIG), request)
    assert {a.node for a in plan.assignments} == {"n3"}


def test_all_to_all_gpus_to_come_are_bounded_by_the_nearest_free_ones() -> None:
    """Three 1-GPU prefill and three 2-GPU decode replicas (all-to-all) on two DGX-1 nodes in
    different blocks and a 4-GPU PCIe node: the optimum sends one prefill replica to the PCIe
    node in the same block (traffic 304.4); with every GPU still to come bounded at the least
    distance of the cluster, the search spent its budget first (550)."""
    ada = (REAL / "rtx6000ada_x4_pcie_nodesys_nics.txt").read_text()
    nodes = [_node("n0", ada, 4, "r2", "b2"), _dgx1("n1", "r1", "b1"), _dgx1("n2", "r1", "b2")]
    request = Request(
        roles=(RoleRequest("prefill", 3, 1, 1), RoleRequest("decode", 3, 1, 2)),
        traffic=(TrafficEdge(0, 1, 1.0, Pattern.ALL_TO_ALL),),
        name="nearest-free",
    )
    _solved_at_the_optimum(snapshots.build(nodes, [], CONFIG), request)
