"""helm for the chart tests: both supported majors (3 and 4) from the control-plane build cache,
each run with its own cache/config/data homes (nothing in ~)."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import kube

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "shorthop"
RELEASE = "shorthop"
NAMESPACE = "shorthop-system"
MAJORS = (3, 4)


@dataclasses.dataclass(frozen=True)
class Helm:
    """One helm binary of a known major."""

    major: int
    binary: str
    home: Path
    # The Kubernetes version `helm template` renders for (`--kube-version`).
    kube_version: str

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }

    def __call__(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        extra = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
        result = subprocess.run(
            [self.binary, *args, *extra],
            capture_output=True,
            text=True,
            env=self.env(),
            check=False,
            timeout=180,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {self.major} ({self.binary}) {' '.join(args)} failed: "
                f"{result.stderr.strip()}"
            )
        return result

    def template(
        self,
        *values: str,
        namespace: str = NAMESPACE,
        check: bool = True,
        kube_version: str | None = None,
    ) -> Any:
        """``helm template`` of the chart; the rendered documents, or the process if it failed."""
        result = self(
            "template", RELEASE, str(CHART), "--namespace", namespace,
            "--kube-version", kube_version or self.kube_version, *values,
            check=check,
        )  # fmt: skip
        if not check:
            return result
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    def version(self) -> str:
        """What ``helm version`` reports, e.g. ``v4.3.2``."""
        return self("version", "--template", "{{.Version}}").stdout.strip()


def _major_of(binary: str) -> int | None:
    proc = subprocess.run(
        [binary, "version", "--template", "{{.Version}}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    found = re.match(r"v(\d+)\.", proc.stdout.strip())
    return int(found[1]) if found else None


def binary(major: int) -> str | None:
    """The helm of one major: the control-plane cache's (``make controlplane`` builds both),
    else a ``helm`` on PATH that reports that major."""
    from e2e.controlplane import components

    built = components.helm_path(major)
    if built.exists():
        return str(built)
    found = shutil.which("helm")
    return found if found and _major_of(found) == major else None


def helm_for(major: int, home: Path, kube_version: str) -> Helm:
    """A :class:`Helm` of ``major``, failing (or, against an external cluster without it,
    skipping) with what to do when there is none."""
    from e2e.controlplane import components

    found = binary(major)
    if found is None:
        where = components.helm_path(major)
        if os.environ.get(kube.KUBECONFIG_ENV):
            pytest.skip(f"no helm {major}: {where} is not built and helm on PATH is not v{major}")
        pytest.fail(f"no helm {major} at {where}: run `make controlplane` to build it")
    return Helm(major, found, home, kube_version)
