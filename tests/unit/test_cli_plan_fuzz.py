"""``shorthop plan`` on malformed snapshot files: exit 1 with one line on stderr, or a plan when
the damage left a usable snapshot; never a traceback (the always-on, smaller version of
``chaos/test_fuzz.py``). Then one regression test per defect the fuzzing found.

The hypothesis test is a regression test too: the suite's ``ci`` profile replays the same
examples on every run; ``make fuzz`` draws fresh ones (``tests/hypothesis_profiles.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from shorthop import quantity
from shorthop.placement import snapshot
from shorthop.topology import fake, levels

from tests import bounds, malformed, plan_cli
from tests.hypothesis_profiles import examples


@settings(max_examples=examples(40))  # each example runs the whole CLI
@given(malformed.snapshot_files())
def test_regression_sample_of_malformed_snapshot_files_exit_1_with_one_line_or_plan(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    """A fixed sample under the ci profile (fresh ones under ``make fuzz``): exit 1 with one
    line, or exit 0/2 with the plan as JSON."""
    tally = malformed.Tally()
    tally.run(plan_cli.plan_on_bytes(tmp_path_factory.mktemp("fuzz")), case)
    assert not tally.failures(), tally.failures()


@pytest.mark.parametrize(
    "data",
    malformed.NOT_SNAPSHOTS,
    ids=[f"not-a-snapshot-{i}" for i in range(len(malformed.NOT_SNAPSHOTS))],
)
def test_files_that_are_not_snapshots_exit_1_with_one_line_naming_the_file(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_bytes(data)
    run = plan_cli.run_plan(path)
    assert plan_cli.judge_plan(run) == "exit-1"
    assert str(path) in run.stderr


@pytest.mark.parametrize(
    "data",
    malformed.NOTHING_TO_PLACE_ON,
    ids=["node-without-gpus", "taints-not-a-list"],
)
def test_snapshots_without_a_usable_gpu_node_exit_2_with_the_reason(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_bytes(data)
    run = plan_cli.run_plan(path)
    assert plan_cli.judge_plan(run) == "exit-2"
    plan = json.loads(run.stdout)
    assert plan["assignments"] == []
    assert any("largest usable node has 0" in reason for reason in plan["reasons"]), plan


def test_missing_file_and_directory_exit_1_with_one_line_naming_the_path(tmp_path: Path) -> None:
    for name, path in plan_cli.special_snapshot_paths(tmp_path):
        run = plan_cli.run_plan(path)
        assert plan_cli.judge_plan(run) == "exit-1", name
        assert str(path) in run.stderr, name


def test_an_unreadable_file_exits_1_with_one_line_saying_so(tmp_path: Path) -> None:
    path = plan_cli.unreadable_snapshot(tmp_path)
    if os.access(path, os.R_OK):
        # Root (as in CI) reads a file of mode 000 all the same (CAP_DAC_OVERRIDE); the CLI
        # then runs as a child process without that capability.
        try:
            run = plan_cli.run_plan_without_file_override(path)
        except OSError as exc:
            pytest.skip(
                "this process reads files of mode 000 (CAP_DAC_OVERRIDE) and cannot start a "
                f"child without that capability, so no file is unreadable to it: {exc}"
            )
    else:
        run = plan_cli.run_plan(path)
    assert plan_cli.judge_plan(run) == "exit-1"
    assert f"{path}: cannot be read" in run.stderr


# -- regressions ---------------------------------------------------------------------------------

HUGE = "1" + "0" * 5000


def _plan(tmp_path: Path, text: str) -> plan_cli.PlanRun:
    path = tmp_path / "snapshot.yaml"
    path.write_text(text)
    return plan_cli.run_plan(path)


@pytest.mark.parametrize(
    "text",
    [
        f"kind: Node\nmetadata: {{name: n}}\nstatus: {{allocatable: {{nvidia.com/gpu: {HUGE}}}}}\n",
        f'{{"kind": "Node", "metadata": {{"name": "n"}}, "spec": {{"x": {HUGE}}}}}',
        "[" * 100_000,
        "a: " + "[" * 20_000,
    ],
    ids=["yaml-5000-digits", "json-5000-digits", "json-deep", "yaml-deep"],
)
def test_numbers_too_long_and_nesting_too_deep_are_one_line_errors(
    tmp_path: Path, text: str
) -> None:
    """int() refuses more than 4,300 digits with a ValueError, which the loaders let through."""
    run = _plan(tmp_path, text)
    assert plan_cli.judge_plan(run) == "exit-1"
    assert "snapshot.yaml" in run.stderr


def _cluster(pods: list[dict[str, Any]], allocatable: dict[str, Any] | None = None) -> str:
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=2))
    nodes[0]["status"]["allocatable"].update(allocatable or {})
    return yaml.safe_dump(fake.as_list([*nodes, *pods]))


def _pod(node: str, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "x"},
        "spec": {"nodeName": node, **spec},
        "status": {"phase": "Running"},
    }


NODE = "h100-su0-n00"


@pytest.mark.parametrize(
    "pod",
    [
        _pod(NODE, containers=[{"name": "c", "resources": "lots"}]),
        _pod(NODE, containers=[{"name": "c", "resources": {"limits": ["nvidia.com/gpu"]}}]),
        _pod(NODE, containers=5),
        _pod(NODE, tolerations=5),
        {"kind": "Pod", "metadata": {"name": "p"}, "spec": "x"},
        _pod(NODE, containers=[{"resources": {"limits": {"nvidia.com/gpu": "10000000000"}}}]),
        _pod(NODE, containers=[{"resources": {"requests": {"cpu": "9e18"}}}] * 3),
        {
            **_pod(NODE, containers=[{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]),
            "metadata": {"name": "p", "annotations": {"shorthop.io/gpus": "²"}},
        },
    ],
    ids=[
        "resources-string",
        "limits-list",
        "containers-number",
        "tolerations-number",
        "spec-string",
        "ten-billion-gpus",
        "cpu-past-int64",
        "annotation-superscript",
    ],
)
def test_malformed_pods_do_not_crash_the_snapshot(tmp_path: Path, pod: dict[str, Any]) -> None:
    run = _plan(tmp_path, _cluster([pod]))
    assert plan_cli.judge_plan(run) in ("exit-0", "exit-2")


@pytest.mark.parametrize(
    ("pod", "field"),
    [
        ({"kind": "Pod", "metadata": [1], "spec": {"nodeName": NODE}}, "metadata.name"),
        ({"kind": "Pod", "metadata": {"name": 3}, "spec": {"nodeName": NODE}}, "metadata.name"),
        (
            {"kind": "Pod", "metadata": {"name": "p", "namespace": {}}, "spec": {}},
            "metadata.namespace",
        ),
    ],
    ids=["metadata-list", "name-number", "namespace-mapping"],
)
def test_a_pod_without_a_usable_name_exits_1_naming_the_field(
    tmp_path: Path, pod: dict[str, Any], field: str
) -> None:
    """Dropping such a pod would free the GPUs it holds; the snapshot is not kubectl's output."""
    run = _plan(tmp_path, _cluster([pod]))
    assert plan_cli.judge_plan(run) == "exit-1"
    assert field in run.stderr
    assert "Pod #1" in run.stderr


ABSURD_QUANTITIES = ["1e999999999", "1e999999", "1e30", "99999999999999999999Ei"]


@pytest.mark.parametrize("value", ABSURD_QUANTITIES)
def test_absurd_node_quantities_are_malformed_not_a_crash_or_a_hang(
    tmp_path: Path, value: str
) -> None:
    """Expanding 1e999999 to an int took 38 s; 1e999999999 overflowed the decimal context; and a
    value past int64 overflowed the headroom array. The work is bounded by memory, not time: the
    same snapshot with ordinary quantities is the yardstick (one 1e999999 expanded would add
    about 400 KiB, three of them 1.2 MiB)."""
    ordinary = {"cpu": "96", "memory": "1Ti", "pods": "110"}
    _plan(tmp_path, _cluster([], ordinary))  # warm up: imports and caches are not the case's
    _, usual = bounds.peak_bytes(lambda: _plan(tmp_path, _cluster([], ordinary)))
    run, peak = bounds.peak_bytes(
        lambda: _plan(tmp_path, _cluster([], {"cpu": value, "memory": value, "pods": value}))
    )
    assert plan_cli.judge_plan(run) in ("exit-0", "exit-2")
    assert peak < usual + 64 * 1024, (peak, usual)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e999999999", None),
        ("1e999999", None),
        ("9223372036854775808", None),
        ("9223372036854775807", 2**63 - 1),
        ("1e18", 10**18),
        ("1Ei", 2**60),
        ("1e-999999999", 1),
        ("0e999999999", 0),
    ],
)
def test_quantities_past_int64_are_malformed(text: str, value: int | None) -> None:
    """Decided on the exponent, never by building the number: parsing allocates a few KiB at
    most (an integer of 10^999999 alone takes about 400 KiB)."""
    parsed, peak = bounds.peak_bytes(lambda: quantity.parse(text))
    assert parsed == value
    assert peak < 16 * 1024


def test_a_pod_cannot_count_more_gpus_than_its_node_has() -> None:
    nodes = fake.nodes(fake.ClusterShape(hgx_units=1, nodes_per_unit=1))
    pod = _pod(nodes[0]["metadata"]["name"], containers=[{"resources": {"limits": {"nvidia.com/gpu": "3000000000"}}}])  # fmt: skip
    snap = snapshot.build(nodes, [pod], levels.preset("plain"))
    assert int(snap.foreign[0]) == 8
    assert int(snap.free_counts[0]) == 0


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: shorthop.io/v1alpha1\nkind: InferenceDeployment\nmetadata: {name: x}\n"
        f"spec: {{roles: [{{name: a, replicas: {HUGE}, gpusPerReplica: 1}}]}}\n",
        "[" * 30_000,
    ],
    ids=["5000-digits", "deep"],
)
def test_deployment_files_the_yaml_loader_chokes_on_are_one_line_errors(
    tmp_path: Path, text: str
) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(_cluster([]))
    deployment = tmp_path / "d.yaml"
    deployment.write_text(text)
    run = plan_cli.run_plan(cluster, deployment)
    assert plan_cli.judge_plan(run) == "exit-1"
    assert "--deployment" in run.stderr
