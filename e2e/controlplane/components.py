"""The pinned components of the local control plane: one source of truth for versions and builds.

Each Go wrapper module under ``gomod/`` pins one upstream release (go.mod + go.sum checked in);
this table says which packages to build from it and which version ldflags make the binaries report
their real release. ``build`` reads it; ``cluster`` asks it for binary paths.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

GOMOD_ROOT = Path(__file__).resolve().parent / "gomod"

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.8"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.5"
# A Kubernetes manifest scanner: the chart's policy check (tests/integration/test_chart_scan.py).
KUBE_SCORE_VERSION = "v1.20.0"


def _kube_ldflags(version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    # kube-apiserver reports component-base's version; kubectl's client side reads client-go's.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return flags


@dataclass(frozen=True, slots=True)
class GoModule:
    """One wrapper module and the main packages built from it (name -> import path)."""

    name: str
    version: str
    binaries: dict[str, str]
    ldflags: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return GOMOD_ROOT / self.name

    def recipe(self) -> str:
        """A digest of everything that shapes the binaries: pins, sums, packages, ldflags."""
        digest = hashlib.sha256()
        for part in (self.version, *self.binaries.values(), *self.ldflags):
            digest.update(part.encode() + b"\0")
        for name in ("go.mod", "go.sum"):
            digest.update((self.directory / name).read_bytes())
        return digest.hexdigest()[:16]


MODULES: tuple[GoModule, ...] = (
    GoModule(
        name="kubernetes",
        version=KUBERNETES_VERSION,
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=tuple(_kube_ldflags(KUBERNETES_VERSION)),
    ),
    GoModule(
        name="etcd",
        version=ETCD_VERSION,
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        ldflags=(f"-X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}",),
    ),
    GoModule(
        name="kwok",
        version=KWOK_VERSION,
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}",),
    ),
    GoModule(
        name="helm",
        version=HELM_VERSION,
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
        ldflags=(
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            # The Kubernetes version `helm template` assumes without a cluster (kubeVersion checks).
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34",
        ),
    ),
    GoModule(
        name="kube-score",
        version=KUBE_SCORE_VERSION,
        binaries={"kube-score": "github.com/zegl/kube-score/cmd/kube-score"},
        ldflags=(f"-X main.version={KUBE_SCORE_VERSION}",),
    ),
)


def cache_dir() -> Path:
    """Where built binaries live: ``$SHORTHOP_CACHE/bin`` (default ``~/.cache/shorthop/bin``)."""
    root = os.environ.get("SHORTHOP_CACHE") or str(Path.home() / ".cache" / "shorthop")
    return Path(root) / "bin"


def module_of(name: str) -> GoModule:
    for module in MODULES:
        if name in module.binaries:
            return module
    raise KeyError(f"unknown control-plane component {name!r}")


def binary_path(name: str) -> Path:
    """The cached binary for a component, named ``<component>-<version>``; a ``.recipe`` file
    beside it records the build recipe, so a changed pin or flag rebuilds it."""
    return cache_dir() / f"{name}-{module_of(name).version}"


def is_current(name: str) -> bool:
    path = binary_path(name)
    stamp = path.with_name(path.name + ".recipe")
    if not (path.exists() and stamp.exists()):
        return False
    return stamp.read_text().strip() == module_of(name).recipe()
