"""On a machine with an NVIDIA GPU and its driver: the agent reads it through the real NVML,
agrees with ``nvidia-smi topo -m``, and ``--once --dry-run`` succeeds. Skipped (and reported as
skipped) where there is no GPU, which is every machine this project's CI has had so far."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import pytest
from shorthop.agent import reader
from shorthop.agent.sysfs import Sysfs
from shorthop.topology import hardware, smi

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def nvml() -> Any:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA GPU with a driver here (nvmlInit: {exc})")
    pynvml.nvmlShutdown()
    return pynvml


def test_the_real_nvml_reading_agrees_with_nvidia_smi(nvml: Any) -> None:
    reading = reader.read_nvml(nvml, Sysfs("/sys"))
    assert len(reading.gpus) >= 1
    assert all(g.uuid and g.pci_bus_id for g in reading.gpus)
    matrix = hardware.to_matrix(reading)
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi to compare with")
    printed = smi.parse(
        subprocess.run(
            ["nvidia-smi", "topo", "-m"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert matrix.gpu == printed.gpu
    assert matrix.numa_affinity == printed.numa_affinity
    assert matrix.cpu_affinity == printed.cpu_affinity


def test_once_dry_run_on_a_real_gpu(nvml: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shorthop.cli", "node-agent", "--once", "--dry-run", "--node", "this"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "via nvml" in done.stdout.splitlines()[0]
