"""``shorthop node-agent`` as a user runs it: --once --dry-run prints what it would write, bad
flags are one line naming the flag, the test-only fake NVML is refused inside a pod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shorthop import cli
from shorthop.agent import fakenvml
from shorthop.topology import hardware, labels, smi

CAPTURE = (
    Path(__file__).resolve().parents[2]
    / "fixtures"
    / "nvidia-smi"
    / "real"
    / "h200x8_hgx_nv18_12nic.txt"
)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "recording.json"
    path.write_text(
        json.dumps(
            fakenvml.recording_from_matrix(smi.parse(CAPTURE.read_text()), name="NVIDIA H200")
        )
    )
    return path


def _annotations(out: str) -> dict[str, str]:
    blocks: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines(keepends=True):
        if line.startswith("# annotation "):
            current = line.removeprefix("# annotation ").strip().rstrip(":")
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {k: "".join(v) for k, v in blocks.items()}


def test_once_dry_run_prints_both_annotations(
    recording: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    status = cli.main(
        ["node-agent", "--once", "--dry-run", "--fake-nvml", str(recording), "--node", "gpu-1"]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("# node gpu-1: 8 GPU(s) NVIDIA H200 via fake-nvml")
    written = _annotations(out)
    assert set(written) == {labels.SMI_ANNOTATION, labels.TOPOLOGY_ANNOTATION}
    expected = smi.parse(CAPTURE.read_text())
    assert smi.parse(written[labels.SMI_ANNOTATION]).links_equal(expected)
    assert hardware.decode(written[labels.TOPOLOGY_ANNOTATION]).matrix.links_equal(expected)


def test_the_fake_nvml_is_refused_inside_a_pod(
    recording: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert cli.main(["node-agent", "--once", "--dry-run", "--fake-nvml", str(recording)]) == 1
    err = capsys.readouterr().err
    assert "--fake-nvml: is a test option and is refused inside a pod" in err
    assert "Traceback" not in err


def test_the_fake_nvml_option_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["node-agent", "--help"])
    assert "fake" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--once"], "--node: is required"),
        (["--once", "--node", "n", "--interval", "0"], "--interval: must be a positive number"),
        (["--once", "--node", "n", "--health-port", "70000"], "--health-port: must be 0..65535"),
        (
            ["--once", "--dry-run", "--fake-nvml", "/nonexistent.json"],
            "--fake-nvml: cannot read /nonexistent.json",
        ),
    ],
    ids=["no-node", "interval", "port", "missing-recording"],
)
def test_bad_flags_are_one_line_naming_the_flag(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cli.main(["node-agent", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_dry_run_without_nvml_or_nvidia_smi_says_why_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(
        [
            "node-agent",
            "--once",
            "--dry-run",
            "--nvidia-smi",
            str(tmp_path / "none"),
            "--sysfs-root",
            str(tmp_path),
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "cannot read the GPU topology" in err
    assert "NVML: " in err  # binding missing, or no driver library on this machine
    assert "none topo -m: [Errno 2]" in err
