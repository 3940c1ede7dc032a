"""Fake clusters: NVL72 racks, HGX units, L40S nodes; clean labels under every preset."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest
from shorthop.topology import fake, labels, levels

MIXED = fake.ClusterShape(nvl72_racks=2, hgx_units=2, nodes_per_unit=8, l40s_nodes=12)


def by_prefix(nodes: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [n for n in nodes if n["metadata"]["name"].startswith(prefix)]


def node_labels(node: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = node["metadata"]["labels"]
    return result


def test_nvl72_racks_have_18_trays_of_4_gpus_sharing_one_clique_per_rack() -> None:
    nodes = fake.nodes(fake.ClusterShape(nvl72_racks=3))
    assert len(nodes) == 3 * 18
    cliques: dict[str, list[str]] = defaultdict(list)
    for node in nodes:
        parsed = labels.parse_node(node, fake.CONFIG)
        topo = parsed.topology
        assert topo is not None
        assert (topo.gpus, topo.product, topo.model.name) == (4, "NVIDIA-GB200", "nvl-tray")
        assert topo.clique is not None
        cliques[topo.clique].append(topo.name)
    assert len(cliques) == 3
    assert all(len(trays) == 18 for trays in cliques.values())
    for rack, trays in enumerate(sorted(cliques.values())):
        assert all(name.startswith(f"nvl72-r{rack}-") for name in trays)


def test_trays_per_rack_is_honoured() -> None:
    nodes = fake.nodes(fake.ClusterShape(nvl72_racks=2, trays_per_rack=9))
    cliques = Counter(node_labels(n)[levels.GFD_CLIQUE] for n in nodes)
    assert sorted(cliques.values()) == [9, 9]


def test_hgx_units_are_8_gpu_nvswitch_nodes_one_rack_each() -> None:
    shape = fake.ClusterShape(hgx_units=3, nodes_per_unit=4, hgx_product="h200")
    topologies = fake.topologies(fake.nodes(shape))
    assert len(topologies) == 12
    assert {(t.gpus, t.product, t.model.name, t.clique) for t in topologies} == {
        (8, "NVIDIA-H200", "hgx-nvswitch", None)
    }
    units = Counter(t.chain[-1] for t in topologies)
    assert sorted(units.values()) == [4, 4, 4]


@pytest.mark.parametrize("product", ["h100", "h200", "a100"])
def test_hgx_products(product: str) -> None:
    (topo,) = fake.topologies(fake.hgx_cluster(nodes=1, product=product))
    assert topo.product == fake.PRODUCTS[product].label
    assert topo.model.nvswitch


def test_l40s_nodes_are_4_gpu_pcie_racked_8_to_a_rack() -> None:
    topologies = fake.topologies(fake.nodes(fake.ClusterShape(l40s_nodes=10)))
    assert {(t.gpus, t.model.name, t.clique) for t in topologies} == {
        (4, "pcie-conservative", None)
    }
    assert sorted(Counter(t.chain[-1] for t in topologies).values()) == [2, 8]


def test_units_group_into_blocks_and_zones() -> None:
    shape = fake.ClusterShape(hgx_units=20, nodes_per_unit=1)
    chains = [t.chain for t in fake.topologies(fake.nodes(shape))]
    assert len({c[2] for c in chains}) == 20
    assert len({c[1] for c in chains}) == 5  # 4 units per block
    assert len({c[0] for c in chains}) == 2  # 4 blocks per zone


@pytest.mark.parametrize("name", sorted(levels.PRESETS))
def test_every_node_parses_without_warnings_under_every_preset(name: str) -> None:
    config = levels.preset(name)
    nodes = fake.nodes(MIXED, config)
    assert len(nodes) == 2 * 18 + 2 * 8 + 12
    for node in nodes:
        parsed = labels.parse_node(node, config)
        assert parsed.topology is not None, parsed.issues
        assert [i for i in parsed.issues if i.severity == "warning"] == []
        assert None not in parsed.topology.chain
        assert parsed.state.ready


@pytest.mark.parametrize("occupancy", [0.0, 0.3, 0.7, 1.0])
def test_background_pods_never_exceed_a_nodes_gpus(occupancy: float) -> None:
    nodes = fake.nodes(MIXED)
    pods = fake.background_pods(nodes, occupancy, seed=7)
    taken: Counter[str] = Counter()
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        taken[pod["spec"]["nodeName"]] += int(container["resources"]["requests"]["nvidia.com/gpu"])
    for node in nodes:
        capacity = int(node["status"]["allocatable"][labels.GPU_RESOURCE])
        used = taken[node["metadata"]["name"]]
        assert used <= capacity
        if occupancy == 1.0:
            assert used == capacity
    if occupancy == 0.0:
        assert pods == []


def test_background_pod_names_are_unique() -> None:
    pods = fake.background_pods(fake.nodes(MIXED), 0.8, seed=1)
    assert len({p["metadata"]["name"] for p in pods}) == len(pods)


def test_same_seed_same_output_and_other_seed_differs() -> None:
    first = fake.nodes(MIXED, seed=5)
    assert first == fake.nodes(MIXED, seed=5)
    assert fake.background_pods(first, 0.5, seed=5) == fake.background_pods(first, 0.5, seed=5)
    assert first != fake.nodes(MIXED, seed=6)  # clique ids come from the seed


def test_as_list_wraps_like_kubectl() -> None:
    wrapped = fake.as_list(fake.hgx_cluster(nodes=2))
    assert (wrapped["kind"], wrapped["apiVersion"], len(wrapped["items"])) == ("List", "v1", 2)
