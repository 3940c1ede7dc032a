"""``shorthop plan`` on snapshots with ResourceSlices and ResourceClaims (the contract's DRA
extension): devices per assignment in the order of ``gpus``, claims' devices busy, any slice or
claim a cluster may hold read without a traceback, and a malformed one an error naming the object
and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.topology import fake

from tests import builders, plan_cli
from tests.hypothesis_profiles import examples

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "docs" / "examples" / "minimal.yaml"
SHAPE = fake.ClusterShape(hgx_units=1, nodes_per_unit=4, l40s_nodes=2, dra=frozenset({"hgx"}))


def _cluster(occupancy: float = 0.3) -> list[dict[str, Any]]:
    nodes = fake.nodes(SHAPE, seed=2)
    published = fake.resource_slices(nodes, seed=2)
    pods, claims = fake.background_claims(nodes, published, occupancy, seed=2)
    return [*nodes, fake.device_class(), *published, *claims, *pods]


def _plan(tmp_path: Path, objects: list[Any], *flags: str) -> tuple[plan_cli.PlanRun, Any]:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(fake.as_list(objects)))
    run = plan_cli.run_plan(path)
    return run, None


def _json_plan(
    tmp_path: Path, objects: list[Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    from shorthop import cli

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(fake.as_list(objects)))
    status = cli.main(
        ["plan", "--cluster", str(path), "--deployment", str(MINIMAL), "--format", "json"]
    )
    return status, json.loads(capsys.readouterr().out)


def _allocated(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (r["pool"], r["device"])
        for o in objects
        if o["kind"] == "ResourceClaim"
        for r in o.get("status", {}).get("allocation", {}).get("devices", {}).get("results", [])
    }


def test_assignments_on_dra_nodes_list_their_devices_in_the_order_of_gpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = _cluster()
    status, doc = _json_plan(tmp_path, objects, capsys)
    assert status == 0
    published = {s["spec"]["nodeName"]: s for s in objects if s["kind"] == "ResourceSlice"}
    assert any(a["node"] in published for a in doc["assignments"])
    for a in doc["assignments"]:
        if a["node"] not in published:
            assert "devices" not in a  # a device-plugin node
            continue
        # The fake publishes gpu-<i> in PCI bus order, so index i is device gpu-i.
        assert a["devices"] == [
            {"driver": "gpu.nvidia.com", "pool": a["node"], "device": f"gpu-{g}"} for g in a["gpus"]
        ]


def test_devices_in_any_claim_are_never_planned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = _cluster(occupancy=0.6)
    busy = _allocated(objects)
    assert busy
    status, doc = _json_plan(tmp_path, objects, capsys)
    planned = {(d["pool"], d["device"]) for a in doc["assignments"] for d in a.get("devices", [])}
    assert status in (0, 2)
    assert not planned & busy


def test_a_node_filled_by_claims_is_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The minimal example needs 24 GPUs: three free nodes of four."""
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=4, dra=frozenset({"hgx"})))
    published = fake.resource_slices(nodes)
    full = builders.claim(
        "all", [("h100-su0-n00", f"gpu-{i}") for i in range(8)], owner=("trainer", "u1")
    )
    status, doc = _json_plan(tmp_path, [*nodes, *published, full], capsys)
    assert status == 0
    assert "h100-su0-n00" not in {a["node"] for a in doc["assignments"]}
    one_short = builders.claim("one", [("h100-su0-n01", "gpu-3")])
    status, doc = _json_plan(tmp_path, [*nodes, *published, full, one_short], capsys)
    assert status == 2
    assert doc["reasons"]


def _variety() -> list[dict[str, Any]]:
    """What a cluster may hold beside the NVIDIA driver's one-slice pools: another driver's
    slices, a pool split over two slices, an obsolete generation, v1beta1 objects, claims in every
    state (unallocated, being deleted, naming devices nobody publishes, other drivers)."""
    nodes = [builders.dra_node(f"d{i}") for i in range(5)]
    split = [builders.gpu_device(i) for i in range(8)]
    beta = builders.gpu_slice("d2", name="d2-beta")
    beta["apiVersion"] = "resource.k8s.io/v1beta1"
    for device in beta["spec"]["devices"]:
        device["basic"] = {"attributes": device.pop("attributes"),
                           "capacity": device.pop("capacity")}  # fmt: skip
    beta_claim = builders.claim("beta", [("d2", "gpu-0")])
    beta_claim["apiVersion"] = "resource.k8s.io/v1beta1"
    beta_claim["spec"]["devices"]["requests"] = [
        {"name": "gpus", "deviceClassName": "gpu.nvidia.com", "count": 1}
    ]
    return [
        *nodes,
        builders.resource_slice("d0", split[:4], name="d0-a", count=2),
        builders.resource_slice("d0", split[4:], name="d0-b", count=2),
        builders.gpu_slice("d1", name="d1-old", generation=1),
        builders.gpu_slice("d1", gpus=6, name="d1-new", generation=2),
        beta,
        builders.gpu_slice("d3"),
        builders.gpu_slice("d4"),
        builders.resource_slice("d0", [builders.gpu_device(0)], name="nic",
                                driver="nic.example.com"),
        builders.claim("pending"),
        builders.claim("going", [("d0", "gpu-1")], deleting=True),
        builders.claim("ghost", [("d0", "gpu-42"), ("nowhere", "gpu-0")]),
        builders.claim("nic", [("d0", "gpu-2")], driver="nic.example.com"),
        beta_claim,
    ]  # fmt: skip


def test_slices_and_claims_of_every_kind_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, doc = _json_plan(tmp_path, _variety(), capsys)
    assert status == 0
    planned = {(d["pool"], d["device"]) for a in doc["assignments"] for d in a["devices"]}
    assert ("d0", "gpu-1") not in planned  # a claim being deleted still holds its device
    assert ("d2", "gpu-0") not in planned  # the v1beta1 claim
    assert not {p for p in planned if p[0] == "d1" and p[1] in ("gpu-6", "gpu-7")}  # obsolete


def test_the_kubectl_list_of_all_four_kinds_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubectl get nodes,pods,resourceslices,resourceclaims -A -o yaml`: one List."""
    status, doc = _json_plan(tmp_path, _cluster(), capsys)
    assert (status, doc["feasible"]) == (0, True)


@pytest.mark.parametrize(
    ("break_it", "words"),
    [
        (
            lambda objs: objs[-4]["spec"]["pool"].update(generation="two"),
            ["ResourceSlice", "spec.pool.generation"],
        ),
        (
            lambda objs: objs[-4]["spec"]["devices"][0].update(name=None),
            ["ResourceSlice", "spec.devices[0].name"],
        ),
        (
            lambda objs: objs[-2]["status"]["allocation"]["devices"]["results"][0].pop("device"),
            ["ResourceClaim default/", "status.allocation.devices.results[0].device"],
        ),
        (
            lambda objs: objs[-2]["status"].update(reservedFor="me"),
            ["ResourceClaim default/", "status.reservedFor"],
        ),
    ],
    ids=["slice-generation", "device-name", "result-device", "reserved-for"],
)
def test_a_malformed_slice_or_claim_exits_1_naming_the_object_and_field(
    tmp_path: Path, break_it: Any, words: list[str]
) -> None:
    nodes = [builders.dra_node("d0")]
    objects = [
        *nodes,
        builders.gpu_slice("d0"),
        builders.gpu_slice("d0", name="second"),
        builders.claim("c", [("d0", "gpu-0")]),
        builders.claim("d", [("d0", "gpu-1")]),
    ]
    objects = [copy.deepcopy(o) for o in objects]
    break_it(objects)
    run, _ = _plan(tmp_path, objects)
    assert plan_cli.judge_plan(run) == "exit-1"
    for word in words:
        assert word in run.stderr


# -- fuzzing: any damage to slices and claims is a plan or one clear line ------------------------

DRA_TARGETS = (
    ("spec",), ("spec", "driver"), ("spec", "nodeName"), ("spec", "pool"),
    ("spec", "pool", "name"), ("spec", "pool", "generation"),
    ("spec", "pool", "resourceSliceCount"), ("spec", "devices"), ("spec", "devices", 0),
    ("spec", "devices", 0, "name"), ("spec", "devices", 0, "attributes"),
    ("spec", "devices", 0, "attributes", "type"),
    ("spec", "devices", 0, "attributes", "uuid"),
    ("spec", "devices", 0, "attributes", "resource.kubernetes.io/numaNode"),
    ("spec", "devices", 0, "attributes", "resource.kubernetes.io/pciBusID"),
    ("spec", "devices", 0, "capacity"), ("spec", "devices", 0, "capacity", "memory"),
    ("spec", "devices", 0, "taints"), ("metadata",), ("metadata", "name"),
    ("metadata", "ownerReferences"), ("status",), ("status", "allocation"),
    ("status", "allocation", "devices"), ("status", "allocation", "devices", "results"),
    ("status", "allocation", "devices", "results", 0),
    ("status", "allocation", "devices", "results", 0, "pool"),
    ("status", "allocation", "devices", "results", 0, "device"),
    ("status", "allocation", "nodeSelector"), ("status", "reservedFor"),
    ("spec", "devices", "requests"), ("spec", "devices", "requests", 0, "exactly", "count"),
    ("apiVersion",), ("kind",),
)  # fmt: skip
GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**20), st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                             max_size=2),
)  # fmt: skip


def _has(node: Any, step: Any) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and step < len(node)


def _put(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set ``path`` where its parent exists."""
    node = doc
    for step in path[:-1]:
        if not _has(node, step):
            return
        node = node[step]
    if isinstance(node, dict) or _has(node, path[-1]):
        node[path[-1]] = value


BASE = _cluster() + _variety()
DRA_INDEXES = [i for i, o in enumerate(BASE) if o["kind"] in ("ResourceSlice", "ResourceClaim")]


@settings(max_examples=examples(60))  # each example runs the whole CLI
@given(
    st.lists(
        st.tuples(st.sampled_from(DRA_INDEXES), st.sampled_from(DRA_TARGETS), GARBAGE),
        min_size=1,
        max_size=4,
    )
)
def test_damaged_slices_and_claims_plan_or_exit_1_with_one_line(
    tmp_path_factory: pytest.TempPathFactory, damage: list[tuple[int, tuple[Any, ...], Any]]
) -> None:
    objects = copy.deepcopy(BASE)
    for index, path, value in damage:
        _put(objects[index], path, value)
    run, _ = _plan(tmp_path_factory.mktemp("dra"), objects)
    outcome = plan_cli.judge_plan(run)
    if outcome == "exit-1":
        # The object is named (or, without a kind, its place in the file), and so is the field.
        assert any(w in run.stderr for w in ("ResourceSlice", "ResourceClaim", "item")), run.stderr
