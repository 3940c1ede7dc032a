"""The agent's reader on a fake NVML: every real capture reads back exactly; odd answers are
"unknown", never a failure; NVML missing -> nvidia-smi; both missing -> one clear error."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from shorthop.agent import fakenvml, reader
from shorthop.agent.sysfs import Sysfs
from shorthop.topology import hardware, smi

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CAPTURES = sorted((FIXTURES / "nvidia-smi").glob("*/*.txt"))
PROBE = FIXTURES / "gfd" / "h200x1-nvml-probe.json"
H200X1 = FIXTURES / "nvidia-smi" / "real" / "h200x1_real_ansi.txt"


def _read(recording: dict[str, Any], tmp_path: Path) -> hardware.NodeReading:
    root = fakenvml.write_sysfs(recording, tmp_path / "sys")
    return reader.read_nvml(fakenvml.FakeNvml(recording), Sysfs(root))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_nvml_answers_derived_from_a_capture_read_back_as_the_same_matrix(
    capture: Path, tmp_path: Path
) -> None:
    expected = smi.parse(capture.read_text())
    reading = _read(fakenvml.recording_from_matrix(expected), tmp_path)
    got = hardware.to_matrix(reading)
    assert got.links_equal(expected), smi.render(got)
    # ... and what the agent publishes parses back to it, both forms.
    assert smi.parse(smi.render(got)).links_equal(expected)
    assert hardware.decode(hardware.encode(reading, got)).matrix.links_equal(expected)
    assert all(g.uuid and g.uuid.startswith("GPU-") for g in reading.gpus)


def test_the_real_h200_probe_reads_without_failing_and_unknowns_are_noted(tmp_path: Path) -> None:
    recording = json.loads(PROBE.read_text())
    fake = fakenvml.FakeNvml(recording)
    reading = reader.read_nvml(fake, Sysfs(tmp_path / "no-sysfs"))
    assert fake.initialised == 0, "nvmlShutdown after nvmlInit"
    (gpu,) = reading.gpus
    assert (gpu.uuid, gpu.name, gpu.pci_bus_id) == (
        "GPU-00000000-0000-0000-0000-000000000000",
        "NVIDIA H200",
        "0000:00:06.0",
    )
    assert gpu.gpu_numa_id is None  # NotSupported
    assert gpu.nvlinks is None  # NotSupported on link 0
    assert gpu.fabric is not None
    assert gpu.fabric.clique is None  # all zeros: no fabric
    assert reading.clique() is None
    assert reading.driver == "580.159.04"
    notes = " ".join(reading.notes)
    assert "NVLink state unknown" in notes
    assert "TypeError" in notes  # the V variant's calling convention, then the legacy call
    m = hardware.to_matrix(reading)
    assert (m.gpus, m.nics) == (1, ())


def test_the_real_h200_probe_with_its_sysfs_gives_its_real_nvidia_smi_matrix(
    tmp_path: Path,
) -> None:
    recording = json.loads(PROBE.read_text())
    # What sysfs said on that machine (nvidia-smi printed it): NUMA node 0, CPUs 0-15.
    recording["sysfs"] = {
        "pci": {"0000:00:06.0": {"path": ["pci0000:00", "0000:00:06.0"], "numa": 0, "cpus": "0-15"}}
    }
    got = hardware.to_matrix(_read(recording, tmp_path))
    assert got.links_equal(smi.parse(H200X1.read_text()))


def test_fabric_info_gives_the_clique_as_gpu_feature_discovery_spells_it(tmp_path: Path) -> None:
    matrix = smi.parse(
        (FIXTURES / "nvidia-smi" / "handwritten" / "h100x8_nv18_8nic.txt").read_text()
    )
    cluster = "5e6f7a1c-0000-4000-8000-00000000abcd"
    recording = fakenvml.recording_from_matrix(matrix, clique=(cluster, 3))
    reading = _read(recording, tmp_path)
    assert reading.clique() == f"{cluster}.3"
    assert hardware.decode(hardware.encode(reading)).clique == f"{cluster}.3"


def test_a_failed_nvml_init_is_a_read_error(tmp_path: Path) -> None:
    fake = fakenvml.FakeNvml(
        {"init": "ERR NVMLError_DriverNotLoaded: Driver Not Loaded", "gpus": []}
    )
    with pytest.raises(reader.ReadError, match=r"NVML: nvmlInit.*Driver Not Loaded"):
        reader.read_nvml(fake, Sysfs(tmp_path))


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_without_nvml_the_reader_runs_nvidia_smi(tmp_path: Path) -> None:
    capture = FIXTURES / "nvidia-smi" / "real" / "rtxa6000x3_nvlink_bridge_pair_ansi.txt"
    command = _script(tmp_path, f"cat '{capture}'")
    result = reader.read(None, Sysfs(tmp_path), smi_command=command)
    assert result.reading.source == "nvidia-smi"
    assert result.matrix.links_equal(smi.parse(capture.read_text()))
    assert "nvidia-ml-py binding is not installed" in result.reading.notes[0]
    broken = fakenvml.FakeNvml({"init": "ERR NVMLError_LibraryNotFound: x", "gpus": []})
    assert reader.read(broken, Sysfs(tmp_path), smi_command=command).reading.source == "nvidia-smi"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (None, "No such file"),
        (
            "echo 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2; exit 9",
            "exited 9: NVIDIA-SMI has failed",
        ),
        ("echo hello", "printed something unreadable"),
    ],
    ids=["missing", "fails", "garbage"],
)
def test_when_both_fail_the_error_gives_both_reasons(
    tmp_path: Path, body: str | None, why: str
) -> None:
    command = str(tmp_path / "absent") if body is None else _script(tmp_path, body)
    with pytest.raises(reader.ReadError) as caught:
        reader.read(None, Sysfs(tmp_path), smi_command=command)
    assert "nvidia-ml-py binding is not installed" in str(caught.value)
    assert why in str(caught.value)


def test_rdma_nics_are_read_from_sysfs_with_their_numa_node(tmp_path: Path) -> None:
    matrix = smi.parse((FIXTURES / "nvidia-smi" / "real" / "h200x8_hgx_nv18_12nic.txt").read_text())
    recording = fakenvml.recording_from_matrix(matrix)
    nics = Sysfs(fakenvml.write_sysfs(recording, tmp_path)).rdma_nics()
    assert [n.name for n in nics] == sorted(f"mlx5_{k}" for k in range(12))
    assert all(n.pci_bus_id and n.pci_path and n.pci_path[-1] == n.pci_bus_id for n in nics)
    assert Sysfs(tmp_path / "nothing").rdma_nics() == ()
