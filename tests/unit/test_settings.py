"""Operator settings: file < environment < flags, and errors that name where a bad value came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from shorthop import settings
from shorthop.errors import ConfigError


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "topology: {preset: aws}\nschedulerName: from-file\nmetricsPort: 1111\nnamespaces: [a]\n"
    )
    s = settings.load(
        config_file=str(path),
        environ={"SHORTHOP_SCHEDULER_NAME": "from-env", "SHORTHOP_NAMESPACES": "x, y"},
        overrides={("metricsPort",): 2222},
    )
    assert (s.topology.preset, s.scheduler_name, s.metrics_port, s.namespaces) == (
        "aws",
        "from-env",
        2222,
        ["x", "y"],
    )
    assert s.topology.config().level_names == ("layer-1", "layer-2", "layer-3")


def test_custom_levels_and_weights(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "topology:\n  levels: [{name: pod, keys: [example.com/pod]}, {name: rack, keys: [example.com/rack]}]\n  weights: {finestUplink: 120}\n"
    )
    config = settings.load(config_file=str(path), environ={}).topology.config()
    assert config.tiers == (
        "same-node-nvlink",
        "same-node-pcie",
        "nvlink-domain",
        "rack",
        "pod",
        "cluster",
    )
    assert config.weights.finest_uplink == 120


@pytest.mark.parametrize(
    ("content", "environ", "words"),
    [
        ("metricsPort: seventy", {}, "metricsPort"),
        ("", {"SHORTHOP_HEALTH_PORT": "x"}, "SHORTHOP_HEALTH_PORT"),
        ("", {"SHORTHOP_PRESET": "azure"}, "unknown preset 'azure'"),
        ("topology: {weights: {nvlink: 500}}", {}, "distances must grow as bandwidth falls"),
        ("topology: {weights: {warp: 1}}", {}, "weights.warp"),
        ("[1, 2", {}, "is not valid YAML"),
        ("- just a list", {}, "must be a YAML mapping"),
        ("bogus: 1", {}, "bogus"),
        ("leaseDurationSeconds: 3", {}, "renewIntervalSeconds: 2 s is not shorter than the renew"),
    ],
    ids=[
        "bad-port",
        "bad-env",
        "unknown-preset",
        "weights-out-of-order",
        "unknown-weight",
        "bad-yaml",
        "not-a-mapping",
        "unknown-key",
        "renew-not-inside-the-deadline",
    ],
)
def test_bad_settings_raise_one_config_error_naming_the_setting(
    tmp_path: Path, content: str, environ: dict[str, str], words: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        settings.load(config_file=str(path), environ=environ)


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot read /nonexistent"):
        settings.load(config_file="/nonexistent/config.yaml", environ={})


def test_run_with_bad_settings_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from shorthop import cli

    assert cli.main(["run", "--preset", "azure"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown preset 'azure'" in err[0]


def test_the_pod_s_downward_api_names_are_defaults_below_any_setting(tmp_path: Path) -> None:
    pod = {"POD_NAMESPACE": "from-pod", "POD_NAME": "op-0"}
    s = settings.load(environ=pod)
    assert (s.lease_namespace, s.identity) == ("from-pod", "op-0")
    path = tmp_path / "config.yaml"
    path.write_text("leaseNamespace: from-file\n")
    s = settings.load(config_file=str(path), environ={**pod, "SHORTHOP_IDENTITY": "from-env"})
    assert (s.lease_namespace, s.identity) == ("from-file", "from-env")
    assert settings.load(environ={}).lease_namespace == "default"


def test_fault_points_come_from_the_environment_through_the_settings() -> None:
    from shorthop.controller.faults import Faults

    s = settings.load(environ={"SHORTHOP_FAULTS": "after-create:3,after-bind"})
    assert s.faults == "after-create:3,after-bind"
    assert Faults.parse(s.faults).plan == {"after-create": 3, "after-bind": 1}
    assert Faults.parse(settings.load(environ={}).faults).plan == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("after-craete:1", "unknown point 'after-craete'"),
        ("after-create:x", "give point:count"),
        ("after-create:0", "must be 1 or more"),
    ],
)
def test_a_bad_fault_plan_names_the_variable(text: str, words: str) -> None:
    from shorthop.controller.faults import Faults

    with pytest.raises(ConfigError) as caught:
        Faults.parse(text)
    assert "SHORTHOP_FAULTS" in str(caught.value)
    assert words in str(caught.value)
