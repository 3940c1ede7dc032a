"""Cluster summaries: numbers add up level by level, and every left-out node has its reason."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from shorthop.placement import snapshot
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.topology import fake, labels
from shorthop.topology.levels import preset
from shorthop.views import summary

SHAPE = fake.ClusterShape(nvl72_racks=2, hgx_units=2, nodes_per_unit=8, l40s_nodes=4)
FIELDS = ("nodes", "gpus", "free", "used", "unavailable")


def mixed_objects() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The mixed fake cluster at 40% occupancy, plus one node of each kind of trouble."""
    nodes = fake.nodes(SHAPE, seed=1)
    pods = fake.background_pods(nodes, 0.4, seed=1)
    by_name = {n["metadata"]["name"]: n for n in nodes}
    by_name["h100-su0-n03"]["spec"]["unschedulable"] = True
    by_name["l40s-n01"]["status"]["conditions"][0]["status"] = "False"
    mig = copy.deepcopy(by_name["h100-su1-n07"])
    mig["metadata"]["name"] = "a100-mig"
    mig["metadata"]["labels"][labels.PRODUCT] = "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"
    odd = copy.deepcopy(by_name["h100-su1-n07"])
    odd["metadata"]["name"] = "mystery-gpu"
    odd["metadata"]["labels"][labels.PRODUCT] = "Acme-X1"
    cpu = {"kind": "Node", "metadata": {"name": "cpu-0"}, "status": {"allocatable": {"cpu": "8"}}}
    return [*nodes, mig, odd, cpu], pods


@pytest.fixture(scope="module")
def snap() -> ClusterSnapshot:
    nodes, pods = mixed_objects()
    return snapshot.build(nodes, pods, preset("plain"))


@pytest.fixture(scope="module")
def result(snap: ClusterSnapshot) -> summary.Summary:
    return summary.summarize(snap)


def total(rows: list[summary.DomainSummary], name: str) -> int:
    return sum(getattr(r, name) for r in rows)


def test_levels_are_nvlink_domains_then_network_levels_coarse_to_fine(
    result: summary.Summary,
) -> None:
    assert [lv.name for lv in result.levels] == ["nvlink-domain", "zone", "block", "rack"]
    assert [lv.kind for lv in result.levels] == ["nvlink-domain", "network", "network", "network"]


def test_totals(result: summary.Summary) -> None:
    t = result.totals
    # 36 trays x 4 + 17 HGX x 8 (the MIG node is left out) + 4 L40S x 4
    assert (t.nodes, t.gpus) == (36 + 17 + 4, 144 + 136 + 16)
    assert t.unavailable == 8 + 4  # the cordoned HGX node and the NotReady L40S node
    assert t.gpus == t.free + t.used + t.unavailable


@pytest.mark.parametrize("level", range(4), ids=["nvlink-domain", "zone", "block", "rack"])
def test_each_level_adds_up_to_the_cluster(result: summary.Summary, level: int) -> None:
    lv = result.levels[level]
    rows = list(lv.domains) + ([lv.outside] if lv.outside else [])
    for name in FIELDS:
        assert total(rows, name) == getattr(result.totals, name), name
    for d in rows:
        assert d.gpus == d.free + d.used + d.unavailable, d.name


def test_free_counts_match_the_bitsets(snap: ClusterSnapshot, result: summary.Summary) -> None:
    assert result.totals.free == int(snap.free_counts.sum())
    index = snap.index
    rack = result.levels[-1]
    for domain in rack.domains:
        rows = [
            r
            for r in index.rows().tolist()
            if summary.domain_name(index.domain_paths[-1][int(index.dom[r, -1])]) == domain.name
        ]
        assert domain.nodes == len(rows)
        assert domain.free == sum(int(snap.free[r]).bit_count() for r in rows)


def test_nvlink_domains_are_the_racks(result: summary.Summary) -> None:
    nvlink = result.levels[0]
    assert [(d.nodes, d.gpus, d.products) for d in nvlink.domains] == [
        (18, 72, ("NVIDIA-GB200",)),
        (18, 72, ("NVIDIA-GB200",)),
    ]
    assert nvlink.outside is not None
    assert nvlink.outside.name == "(not in an NVLink domain)"
    assert nvlink.outside.nodes == 17 + 4


def test_domains_are_named_by_path_in_natural_order(result: summary.Summary) -> None:
    rack = result.levels[-1]
    assert [d.name for d in rack.domains] == [f"zone-0/block-0/unit-{i}" for i in range(4)] + [
        "zone-0/block-1/unit-4"
    ]
    assert rack.outside is None


def test_excluded_nodes_are_listed_with_reasons(result: summary.Summary) -> None:
    excluded = {n.node: n.reasons for n in result.excluded}
    assert set(excluded) == {"a100-mig", "cpu-0"}
    assert "MIG" in excluded["a100-mig"][0]
    assert "node left out" in excluded["a100-mig"][0]
    assert "not a GPU node" in excluded["cpu-0"][0]


def test_unavailable_and_degraded_nodes_are_listed(result: summary.Summary) -> None:
    unavailable = {n.node: n.reasons for n in result.unavailable}
    assert unavailable == {
        "h100-su0-n03": ("node h100-su0-n03 is cordoned",),
        "l40s-n01": ("node l40s-n01 is not Ready",),
    }
    degraded = {n.node: n.reasons for n in result.degraded}
    assert list(degraded) == ["mystery-gpu"]
    assert "not a known product" in degraded["mystery-gpu"][0]


def test_to_dict_is_json_ready(result: summary.Summary) -> None:
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {
        "preset",
        "networkLevels",
        "totals",
        "levels",
        "excluded",
        "unavailable",
        "degraded",
    }
    assert data["networkLevels"] == ["zone", "block", "rack"]
    assert data["totals"]["excludedNodes"] == 2
    assert data["levels"][0]["domains"][0]["gpus"] == 72
    assert set(data["levels"][0]["domains"][0]) == {"name", *FIELDS, "products"}


def test_to_text_has_a_table_per_level_and_the_reasons(result: summary.Summary) -> None:
    text = result.to_text()
    assert text.startswith("cluster: 57 GPU nodes, 296 GPUs:")
    for heading in ("nvlink-domain: 2 domains", "zone: 1 domain", "rack: 5 domains"):
        assert heading in text
    assert "zone-0/block-1/unit-4" in text
    assert "node cpu-0: status.allocatable[nvidia.com/gpu] is absent" in text
    assert "node l40s-n01 is not Ready" in text


def test_to_text_caps_long_note_lists() -> None:
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=30))
    for node in nodes:
        node["spec"]["unschedulable"] = True
    text = summary.summarize(snapshot.build(nodes, [], preset("plain"))).to_text()
    assert f"... and {30 - summary.NOTE_LIMIT} more nodes" in text


def test_empty_cluster() -> None:
    cpu = {"kind": "Node", "metadata": {"name": "cpu-0"}, "status": {"allocatable": {}}}
    result = summary.summarize(snapshot.build([cpu], [], preset("plain")))
    assert (result.totals.nodes, result.totals.gpus) == (0, 0)
    assert all(lv.domains == () and lv.outside is None for lv in result.levels)
    assert "(none)" in result.to_text()


def test_natural_key_orders_numbers_numerically() -> None:
    names = ["unit-10", "unit-2", "unit-1", "a"]
    assert sorted(names, key=summary.natural_key) == ["a", "unit-1", "unit-2", "unit-10"]


@pytest.mark.parametrize("smallest", [1, 2, 4, 8])
def test_nvlink_capacity_is_the_summarys_nvlink_level_with_stranded_gpus(
    snap: ClusterSnapshot, result: summary.Summary, smallest: int
) -> None:
    capacity = summary.nvlink_capacity(snap, smallest)
    nvlink = result.levels[0]
    assert nvlink.outside is not None
    expected = [(d.name, d.free) for d in (*nvlink.domains, nvlink.outside)]
    assert [(c.name, c.free) for c in capacity] == [*expected[:-1], ("none", expected[-1][1])]
    counts = summary.row_counts(snap)
    for c in capacity:
        rows = [
            r
            for r in counts.rows.tolist()
            if (
                snap.index.clique_names[snap.index.clique_of[r]]
                if snap.index.clique_of[r] >= 0
                else "none"
            )
            == c.name
        ]
        stranded = sum(int(counts.free[r]) for r in rows if 0 < counts.free[r] < smallest)
        assert c.stranded == stranded, c.name
        assert 0 <= c.stranded <= c.free
    if smallest == 1:
        assert all(c.stranded == 0 for c in capacity)
    else:
        assert sum(c.stranded for c in capacity) > 0  # at 40% occupancy some node is nearly full
