"""nvidia-smi topo -m parsing: real captures, hand-written ones, and malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest
from shorthop.errors import TopologyError
from shorthop.topology import smi

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi"
REAL = sorted((FIXTURES / "real").glob("*.txt"))
HANDWRITTEN = sorted((FIXTURES / "handwritten").glob("*.txt"))


def load(name: str) -> smi.TopoMatrix:
    path = next(p for p in [*REAL, *HANDWRITTEN] if p.name == name)
    return smi.parse(path.read_text())


def test_every_capture_parses_into_a_symmetric_matrix_with_x_on_the_diagonal() -> None:
    assert len(REAL) == 6
    assert len(HANDWRITTEN) == 4
    for path in [*REAL, *HANDWRITTEN]:
        m = smi.parse(path.read_text())
        assert m.gpus >= 1, path.name
        for i in range(m.gpus):
            assert m.gpu[i][i].code == "X"
            for j in range(m.gpus):
                assert m.gpu[i][j] == m.gpu[j][i]


def test_h200_capture_has_nv18_everywhere_twelve_nics_and_two_numa_nodes() -> None:
    m = load("h200x8_hgx_nv18_12nic.txt")
    assert m.gpus == 8
    assert {str(m.gpu[i][j]) for i in range(8) for j in range(8) if i != j} == {"NV18"}
    assert m.nics == tuple(f"mlx5_{k}" for k in range(12))
    assert m.numa_groups() == (0, 0, 0, 0, 1, 1, 1, 1)
    assert str(m.gpu_nic[0][0]) == "PXB"
    assert str(m.gpu_nic[4][0]) == "SYS"


def test_a100_capture_skips_the_empty_cell_between_affinity_columns() -> None:
    m = load("a100x8_hgx_nv12_4nic.txt")
    assert m.cpu_affinity[0] == "0-31,64-95"
    assert m.numa_affinity == (0, 0, 0, 0, 1, 1, 1, 1)
    assert str(m.gpu[3][6]) == "NV12"


def test_dgx1_old_legend_named_nic_columns_and_cpu_affinity_only() -> None:
    m = load("v100x8_dgx1_cubemesh_mlx5_oldlegend.txt")
    assert m.nics == ("mlx5_0", "mlx5_2", "mlx5_1", "mlx5_3")
    assert str(m.gpu[0][1]) == "NV1"
    assert str(m.gpu[0][3]) == "NV2"
    assert str(m.gpu[0][5]) == "SYS"
    assert m.numa_affinity == (None,) * 8
    # Sockets come from the two distinct CPU affinity sets.
    assert m.numa_groups() == (0, 0, 0, 0, 1, 1, 1, 1)
    assert "single PCIe switch" in m.legend["PIX"]


def test_ansi_escapes_from_a_tty_are_ignored() -> None:
    m = load("rtxa6000x3_nvlink_bridge_pair_ansi.txt")
    assert m.gpus == 3
    assert str(m.gpu[0][1]) == "NV4"
    assert str(m.gpu[0][2]) == "NODE"
    assert m.nics == ()


def test_space_separated_capture_with_nic_legend() -> None:
    m = load("rtx6000ada_x4_pcie_nodesys_nics.txt")
    assert [str(x) for x in m.gpu[0]] == ["X", "NODE", "SYS", "SYS"]
    assert m.nics == ("mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3")
    assert m.numa_groups() == (0, 0, 1, 1)


@pytest.mark.parametrize(
    ("name", "pair", "link"),
    [
        ("h100x8_nv18_8nic.txt", (2, 7), "NV18"),
        ("a100x8_nv12_4nic.txt", (0, 5), "NV12"),
        ("pcie4_nvlink_bridged_pairs.txt", (2, 3), "NV4"),
        ("pcie4_nvlink_bridged_pairs.txt", (1, 2), "PHB"),
        ("pcie8_2socket_2nic_spaces.txt", (0, 1), "PIX"),
        ("pcie8_2socket_2nic_spaces.txt", (0, 2), "PXB"),
        ("pcie8_2socket_2nic_spaces.txt", (3, 4), "SYS"),
    ],
    ids=str,
)
def test_handwritten_captures(name: str, pair: tuple[int, int], link: str) -> None:
    assert str(load(name).gpu[pair[0]][pair[1]]) == link


def test_legacy_soc_code_reads_as_sys() -> None:
    m = smi.parse("\tGPU0\tGPU1\nGPU0\t X \tSOC\nGPU1\tSOC\t X \n")
    assert m.gpu[0][1].code == "SYS"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello world", "no matrix header"),
        ("\tGPU0\tGPU1\nGPU0\t X \tNV4\nGPU1\tNV4\n", "expected 2"),
        ("\tGPU0\tGPU1\nGPU0\t X \tFOO\nGPU1\tFOO\t X \n", "unknown link 'FOO'"),
        ("\tGPU0\tGPU1\nGPU0\t X \tNV4\nGPU1\tPIX\t X \n", "symmetric"),
        ("\tGPU0\tGPU1\nGPU0\tNV4\tNV4\nGPU1\tNV4\t X \n", "diagonal"),
        ("\tGPU0\tGPU2\nGPU0\t X \tNV4\nGPU2\tNV4\t X \n", "GPU0..GPU1"),
        ("\tGPU0\tGPU1\nGPU0\t X \tNV4\n", "no matrix row for GPU1"),
    ],
    ids=[
        "not-smi",
        "short-row",
        "unknown-code",
        "asymmetric",
        "bad-diagonal",
        "gap-in-gpus",
        "missing-row",
    ],
)
def test_malformed_matrices_raise_a_topology_error_that_says_why(text: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        smi.parse(text)
