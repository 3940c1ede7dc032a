"""The fake NVML answers exactly the calls the reader makes, under pynvml's own names and
calling conventions (checked against the installed nvidia-ml-py, not assumed)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynvml
import pytest
from shorthop.agent import fakenvml, reader

SOURCE = Path(reader.__file__).read_text()
CALLS = sorted(set(re.findall(r'"(nvml\w+)"', SOURCE)))
NAMES = sorted(set(re.findall(r'"(c_nvml\w+|NVML_\w+)"', SOURCE)))


def test_the_reader_calls_what_the_module_docstring_lists() -> None:
    assert len(CALLS) >= 14
    doc = reader.__doc__ or ""
    for call in CALLS:
        if call not in ("nvmlDeviceGetGpuFabricInfo",):
            assert f"``{call}" in doc or call in doc, call


@pytest.mark.parametrize("name", CALLS)
def test_every_call_exists_in_pynvml_and_the_fake_with_the_same_arity(name: str) -> None:
    real = getattr(pynvml, name)
    fake = getattr(fakenvml.FakeNvml({}), name)
    assert len(inspect.signature(real).parameters) == len(inspect.signature(fake).parameters), name


@pytest.mark.parametrize("name", NAMES)
def test_every_structure_and_constant_exists_in_both(name: str) -> None:
    assert hasattr(pynvml, name), name
    assert hasattr(fakenvml.FakeNvml, name), name


def test_the_fabric_structures_have_the_fields_the_reader_reads() -> None:
    for name in ("c_nvmlGpuFabricInfoV_t", "c_nvmlGpuFabricInfo_t"):
        real = {f[0] for f in getattr(pynvml, name)._fields_}
        fake = {f[0] for f in getattr(fakenvml, name)._fields_}
        assert {"clusterUuid", "cliqueId", "state", "status"} <= real & fake, name


def test_the_error_classes_match() -> None:
    assert issubclass(pynvml.NVMLError_NotSupported, pynvml.NVMLError)
    assert issubclass(fakenvml.NVMLError_NotSupported, fakenvml.NVMLError)
    assert pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH == 2
    assert reader.REMOTE_TYPES[pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH] == "switch"
    assert reader.REMOTE_TYPES[pynvml.NVML_NVLINK_DEVICE_TYPE_GPU] == "gpu"
