"""NVML answers -> matrix, PCIe relations from sysfs paths, the structured annotation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shorthop.errors import TopologyError
from shorthop.topology import hardware, smi
from shorthop.topology.hardware import Fabric, GpuReading, NodeReading, NvLink

ROOT = ("pci0000:00", "0000:00:01.0")
SWITCH = (*ROOT, "0000:01:00.0")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00000000:1B:00.0", "0000:1b:00.0"),
        (b"00000000:18:00.0\x00", "0000:18:00.0"),
        ("0000:c3:00.1", "0000:c3:00.1"),
        ("18:00.0", "0000:18:00.0"),
        ("not a bus id", None),
        (None, None),
    ],
    ids=str,
)
def test_bus_ids_are_normalised_to_the_sysfs_form(
    raw: str | bytes | None, expected: str | None
) -> None:
    assert hardware.bus_id(raw) == expected


@pytest.mark.parametrize(
    ("a", "b", "numa", "code"),
    [
        (
            (*SWITCH, "0000:02:00.0", "0000:03:00.0"),
            (*SWITCH, "0000:02:01.0", "0000:04:00.0"),
            (0, 0),
            "PIX",
        ),
        (
            (*ROOT, "0000:05:00.0", "0000:05:00.1"),
            (*ROOT, "0000:05:00.0", "0000:05:00.0"),
            (0, 0),
            "PIX",
        ),
        (
            (*SWITCH, "0000:02:00.0", "0000:03:00.0"),
            (*ROOT, "0000:07:00.0", "0000:08:00.0", "0000:09:00.0"),
            (0, 0),
            "PXB",
        ),
        ((*ROOT, "0000:01:00.0"), ("pci0000:00", "0000:00:02.0", "0000:11:00.0"), (0, 0), "PHB"),
        ((*ROOT, "0000:01:00.0"), ("pci0000:40", "0000:40:01.0", "0000:41:00.0"), (0, 0), "NODE"),
        ((*ROOT, "0000:01:00.0"), ("pci0000:80", "0000:80:01.0", "0000:81:00.0"), (0, 1), "SYS"),
        (
            (*ROOT, "0000:01:00.0"),
            ("pci0000:80", "0000:80:01.0", "0000:81:00.0"),
            (None, None),
            "SYS",
        ),
        (None, (*ROOT, "0000:01:00.0"), (1, 1), "NODE"),
        (None, None, (None, 1), "SYS"),
    ],
    ids=[
        "one-switch",
        "functions-of-one-device",
        "two-switches",
        "host-bridge",
        "numa-node",
        "sockets",
        "numa-unknown",
        "path-unknown-same-numa",
        "all-unknown",
    ],
)
def test_pcie_relation_from_two_sysfs_paths(
    a: tuple[str, ...] | None,
    b: tuple[str, ...] | None,
    numa: tuple[int | None, int | None],
    code: str,
) -> None:
    assert hardware.pcie_relation(a, b, *numa) == code
    assert hardware.pcie_relation(b, a, numa[1], numa[0]) == code


def _gpus(
    n: int, links: dict[int, tuple[NvLink, ...] | None] | None = None
) -> tuple[GpuReading, ...]:
    return tuple(
        GpuReading(
            i, pci_bus_id=f"0000:{i + 1:02x}:00.0", numa_node=0, nvlinks=(links or {}).get(i, ())
        )
        for i in range(n)
    )


def test_nvswitch_links_make_every_pair_nv_the_smaller_count() -> None:
    switch = tuple(NvLink(k, "0000:fe:00.0", "switch") for k in range(18))
    reading = NodeReading("nvml", _gpus(4, {0: switch, 1: switch, 2: switch, 3: switch[:12]}))
    m = hardware.to_matrix(reading)
    assert str(m.gpu[0][1]) == "NV18"
    assert str(m.gpu[0][3]) == "NV12"
    assert {str(m.gpu[i][j]) for i in range(4) for j in range(4) if i != j} == {"NV18", "NV12"}


def test_direct_links_count_once_even_when_only_one_end_reports_them() -> None:
    two = (NvLink(0, "0000:02:00.0", "gpu"), NvLink(1, "0000:02:00.0", "gpu"))
    back = (NvLink(0, "0000:01:00.0", "gpu"), NvLink(1, "0000:01:00.0", "gpu"))
    both = NodeReading(
        "nvml", _gpus(3, {0: two, 1: back}), ancestors={(0, 1): 30, (0, 2): 40, (1, 2): 50}
    )
    m = hardware.to_matrix(both)
    assert [str(x) for x in m.gpu[0]] == ["X", "NV2", "NODE"]
    assert str(m.gpu[1][2]) == "SYS"
    one_sided = NodeReading("nvml", _gpus(2, {0: two, 1: None}))
    assert str(hardware.to_matrix(one_sided).gpu[1][0]) == "NV1"


def test_unknown_pcie_ancestors_fall_back_to_numa_then_sys() -> None:
    gpus = (GpuReading(0, numa_node=0), GpuReading(1, numa_node=0), GpuReading(2))
    m = hardware.to_matrix(NodeReading("nvml", gpus))
    assert [str(x) for x in m.gpu[0]] == ["X", "NODE", "SYS"]


@pytest.mark.parametrize(
    ("fabric", "clique"),
    [
        (Fabric("00000000-0000-0000-0000-000000000000", 0, 0, 0), None),
        (
            Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 7, 3, 0),
            "5e6f7a1c-0000-4000-8000-00000000abcd.7",
        ),
        (Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 7, 2, 0), None),
        (Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 7, 3, 3), None),
    ],
    ids=["all-zero", "completed", "in-progress", "error-status"],
)
def test_a_clique_needs_a_completed_fabric_registration(fabric: Fabric, clique: str | None) -> None:
    assert fabric.clique == clique


def test_gpus_that_disagree_on_the_clique_give_none() -> None:
    a = Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 1, 3, 0)
    b = Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 2, 3, 0)
    agree = NodeReading("nvml", (GpuReading(0, fabric=a), GpuReading(1, fabric=a)))
    disagree = NodeReading("nvml", (GpuReading(0, fabric=a), GpuReading(1, fabric=b)))
    assert agree.clique() == "5e6f7a1c-0000-4000-8000-00000000abcd.1"
    assert disagree.clique() is None


def test_the_structured_annotation_round_trips_and_is_stable() -> None:
    fabric = Fabric("5e6f7a1c-0000-4000-8000-00000000abcd", 4, 3, 0)
    gpus = tuple(
        GpuReading(
            i,
            uuid=f"GPU-{i}",
            name="NVIDIA GB200",
            pci_bus_id=f"0000:{i + 1:02x}:00.0",
            numa_node=i // 2,
            cpu_affinity="0-71",
            fabric=fabric,
        )
        for i in range(4)
    )
    nics = (
        hardware.NicReading("mlx5_1", "0000:20:00.0", 0),
        hardware.NicReading("mlx5_0", "0000:10:00.0", 1),
    )
    reading = NodeReading("nvml", gpus, nics=nics, driver="580.1")
    text = hardware.encode(reading)
    assert text == hardware.encode(reading)
    published = hardware.decode(text)
    assert published.matrix.links_equal(hardware.to_matrix(reading))
    assert published.matrix.nics == ("mlx5_0", "mlx5_1")  # by PCI address
    assert published.uuids == ("GPU-0", "GPU-1", "GPU-2", "GPU-3")
    assert published.clique == "5e6f7a1c-0000-4000-8000-00000000abcd.4"
    assert (published.source, published.driver) == ("nvml", "580.1")


def _valid() -> dict[str, object]:
    return json.loads(hardware.encode(NodeReading("nvml", _gpus(2))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "not json", "is not JSON"),
        (lambda d: {**d, "version": 2}, "version is 2; this shorthop reads version 1"),
        (lambda d: {**d, "gpus": []}, "gpus is empty"),
        (
            lambda d: {**d, "gpus": [d["gpus"][1], d["gpus"][0]]},
            r"gpus\[0\] must be an object with index 0",
        ),
        (
            lambda d: {**d, "gpus": [{**d["gpus"][0], "links": ["X", "NV4"]}, d["gpus"][1]]},
            "symmetric",
        ),
        (
            lambda d: {**d, "gpus": [{**d["gpus"][0], "links": ["X"]}, d["gpus"][1]]},
            r"gpus\[0\].links must list 2 links",
        ),
        (
            lambda d: {**d, "gpus": [{**d["gpus"][0], "links": ["X", "FAST"]}, d["gpus"][1]]},
            "unknown link 'FAST'",
        ),
        (
            lambda d: {**d, "gpus": [{**d["gpus"][0], "numaNode": "zero"}, d["gpus"][1]]},
            r"gpus\[0\].numaNode is 'zero'",
        ),
    ],
    ids=[
        "not-json",
        "version",
        "no-gpus",
        "order",
        "asymmetric",
        "short-row",
        "unknown-code",
        "numa-type",
    ],
)
def test_a_bad_structured_annotation_is_an_error_that_names_the_field(
    change: object, message: str
) -> None:
    data = change(_valid())  # type: ignore[operator]
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(TopologyError, match=message):
        hardware.decode(text)


CODES = st.sampled_from(["PIX", "PXB", "PHB", "NODE", "SYS", "NV1", "NV4", "NV18"])


@st.composite
def matrices(draw: st.DrawFn) -> smi.TopoMatrix:
    g = draw(st.integers(1, 9))
    k = draw(st.integers(0, 4))
    cells = {(i, j): draw(CODES) for i in range(g) for j in range(i + 1, g)}
    nic_cells = {
        (a, b): draw(CODES.filter(lambda c: not c.startswith("NV")))
        for a in range(k)
        for b in range(a + 1, k)
    }

    def link(code: str) -> smi.Link:
        return smi.Link("NV", int(code[2:])) if code.startswith("NV") else smi.Link(code)

    gpu = tuple(
        tuple(smi.Link("X") if i == j else link(cells[min(i, j), max(i, j)]) for j in range(g))
        for i in range(g)
    )
    gpu_nic = tuple(
        tuple(link(draw(CODES.filter(lambda c: not c.startswith("NV")))) for _ in range(k))
        for _ in range(g)
    )
    nic_nic = tuple(
        tuple(smi.Link("X") if a == b else link(nic_cells[min(a, b), max(a, b)]) for b in range(k))
        for a in range(k)
    )
    numa = tuple(draw(st.none() | st.integers(0, 3)) for _ in range(g))
    cpus = tuple(draw(st.none() | st.sampled_from(["0-15", "16-31,48-63"])) for _ in range(g))
    return smi.TopoMatrix(
        g, tuple(f"mlx5_{x}" for x in range(k)), gpu, gpu_nic, cpus, numa, dict(smi.LEGEND), nic_nic
    )


@given(matrices())
def test_any_matrix_renders_to_text_that_parses_back_to_it(m: smi.TopoMatrix) -> None:
    assert smi.parse(smi.render(m)).links_equal(m)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 70)
    | st.sampled_from(["X", "NV4", "PIX", "SYS", "mlx5_0", "", "0-15"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "gpus",
                    "nics",
                    "index",
                    "links",
                    "nicLinks",
                    "name",
                    "numaNode",
                    "cpuAffinity",
                    "uuid",
                    "pciBusId",
                    "clique",
                    "source",
                    "driver",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@given(JSON)
def test_any_json_in_the_structured_annotation_is_read_or_a_topology_error(value: object) -> None:
    data = {"version": 1, **value} if isinstance(value, dict) else value
    try:
        published = hardware.decode(json.dumps(data))
    except TopologyError:
        return
    assert published.matrix.gpus >= 1
