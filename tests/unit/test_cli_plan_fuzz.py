"""``shorthop plan`` on malformed snapshot files: exit 1 with one line on stderr, or a plan when
the damage left a usable snapshot; never a traceback (the always-on, smaller version of
``chaos/test_fuzz.py``; ``SHORTHOP_EXAMPLES`` sets the example count). Then one regression test
per defect the fuzzing found."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from shorthop import quantity
from shorthop.placement import snapshot
from shorthop.topology import fake, levels

from tests import malformed

FUZZ = settings(
    max_examples=malformed.examples(40),
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@FUZZ
@given(malformed.snapshot_files())
def test_malformed_snapshot_files_exit_1_with_one_line_or_plan(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]
) -> None:
    tally = malformed.Tally()
    tally.run(malformed.plan_on_bytes(tmp_path_factory.mktemp("fuzz")), case)
    assert not tally.failures(), tally.failures()


@pytest.mark.parametrize("data", malformed.WHOLE_FILES, ids=range(len(malformed.WHOLE_FILES)))
def test_whole_files_that_are_not_snapshots_exit_1_with_one_line(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "snapshot.yaml"
    path.write_bytes(data)
    assert malformed.judge_plan(malformed.run_plan(path)) in ("exit-1", "exit-2")


def test_missing_file_and_directory_exit_1_with_one_line(tmp_path: Path) -> None:
    for _, path in malformed.special_snapshot_paths(tmp_path):
        assert malformed.judge_plan(malformed.run_plan(path)) in ("exit-1", "exit-2")


# -- regressions ---------------------------------------------------------------------------------

HUGE = "1" + "0" * 5000


def _plan(tmp_path: Path, text: str) -> malformed.PlanRun:
    path = tmp_path / "snapshot.yaml"
    path.write_text(text)
    return malformed.run_plan(path)


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
    assert malformed.judge_plan(run) == "exit-1"
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
        {"kind": "Pod", "metadata": [1], "spec": {"nodeName": NODE}},
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
        "metadata-list",
        "ten-billion-gpus",
        "cpu-past-int64",
        "annotation-superscript",
    ],
)
def test_malformed_pods_do_not_crash_the_snapshot(tmp_path: Path, pod: dict[str, Any]) -> None:
    run = _plan(tmp_path, _cluster([pod]))
    assert malformed.judge_plan(run) in ("exit-0", "exit-2")


@pytest.mark.parametrize("value", ["1e999999999", "1e999999", "1e30", "99999999999999999999Ei"])
def test_absurd_node_quantities_are_malformed_not_a_crash_or_a_hang(
    tmp_path: Path, value: str
) -> None:
    """Expanding 1e999999 to an int took 38 s; 1e999999999 overflowed the decimal context; and a
    value past int64 overflowed the headroom array."""
    started = time.perf_counter()
    run = _plan(tmp_path, _cluster([], {"cpu": value, "memory": value, "pods": value}))
    assert malformed.judge_plan(run) in ("exit-0", "exit-2")
    assert time.perf_counter() - started < 5


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
    started = time.perf_counter()
    assert quantity.parse(text) == value
    assert time.perf_counter() - started < 0.5


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
    run = malformed.run_plan(cluster, deployment)
    assert malformed.judge_plan(run) == "exit-1"
    assert "--deployment" in run.stderr
