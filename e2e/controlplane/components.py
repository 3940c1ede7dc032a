"""The pinned components of the local control plane: one source of truth for versions and builds.

Every supported Kubernetes minor is one :class:`Release`: the newest patch the Go module proxy
serves, and the etcd version that Kubernetes release is tested with (its
``build/dependencies.yaml``). ``SHORTHOP_KUBERNETES_VERSION`` picks one (default: the newest);
kwok and both Helm majors are shared by all. Each Go wrapper module under ``gomod/`` pins one
upstream release (go.mod + go.sum checked in, written by ``python -m e2e.controlplane pin``); this
table says which packages to build from it and which version ldflags make the binaries report
their real release. Binaries are cached as ``<name>-<version>``, so every release can coexist.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GOMOD_ROOT = Path(__file__).resolve().parent / "gomod"
VERSION_ENV = "SHORTHOP_KUBERNETES_VERSION"


@dataclass(frozen=True, slots=True)
class Release:
    """One supported Kubernetes minor and what its control plane is built from."""

    kubernetes: str  # "v1.37.2"
    etcd: str  # the etcd its build/dependencies.yaml names

    @property
    def minor(self) -> str:
        """``"1.37"``."""
        return ".".join(self.kubernetes.lstrip("v").split(".")[:2])


# Newest first; the first is the default. A minor leaves this table when upstream stops
# supporting it (its wrapper module directories go with it).
RELEASES: tuple[Release, ...] = (
    Release("v1.37.2", etcd="v3.7.0"),
    Release("v1.36.3", etcd="v3.6.8"),
    Release("v1.35.4", etcd="v3.6.6"),
)
KWOK_VERSION = "v0.8.0"
# Newest release of each Helm major; `helm` alone means the newest major.
HELM_VERSIONS: dict[int, str] = {3: "v3.22.0", 4: "v4.3.2"}
DEFAULT_HELM_MAJOR = max(HELM_VERSIONS)
# A Kubernetes manifest scanner: the chart's policy check (tests/integration/test_chart_scan.py).
KUBE_SCORE_VERSION = "v1.20.0"


class UnsupportedVersion(ValueError):
    """``SHORTHOP_KUBERNETES_VERSION`` names no supported release."""


def supported() -> str:
    """The supported values, for messages: ``1.37 (v1.37.2), 1.36 (v1.36.3), ...``."""
    return ", ".join(f"{r.minor} ({r.kubernetes})" for r in RELEASES)


def release_for(value: str) -> Release:
    """The release a version string names: ``1.35``, ``1.35.4`` and ``v1.35.4`` all name
    v1.35.4. Only the pinned patch is accepted (another patch would need its own go.sum)."""
    text = value.strip()
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        raise UnsupportedVersion(
            f"{VERSION_ENV}={value!r} is not a Kubernetes version; "
            f"use a minor or its pinned patch: {supported()}"
        )
    minor = f"{int(match[1])}.{int(match[2])}"
    for release in RELEASES:
        if release.minor != minor:
            continue
        if match[3] is not None and f"v{minor}.{int(match[3])}" != release.kubernetes:
            raise UnsupportedVersion(
                f"{VERSION_ENV}={value!r}: Kubernetes {minor} is pinned at "
                f"{release.kubernetes}; set {VERSION_ENV}={minor} or {release.kubernetes}"
            )
        return release
    raise UnsupportedVersion(
        f"{VERSION_ENV}={value!r}: Kubernetes {minor} is not supported; supported: {supported()}"
    )


def selected(environ: Mapping[str, str] | None = None) -> Release:
    """The release ``SHORTHOP_KUBERNETES_VERSION`` picks; unset or empty means the newest."""
    value = (os.environ if environ is None else environ).get(VERSION_ENV, "").strip()
    return release_for(value) if value else RELEASES[0]


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    flags: list[str] = []
    # kube-apiserver reports component-base's version; kubectl's client side reads client-go's.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


@dataclass(frozen=True, slots=True)
class GoModule:
    """One wrapper module and the main packages built from it (name -> import path)."""

    directory_name: str
    upstream: str  # the module it pins, e.g. "k8s.io/kubernetes"
    version: str
    binaries: dict[str, str]
    ldflags: tuple[str, ...] = ()
    # Files of the upstream module the binaries need at run time, concatenated as YAML
    # documents into one cache file per name (``<name>-<version>``).
    assets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return GOMOD_ROOT / self.directory_name

    @property
    def label(self) -> str:
        return f"{', '.join(self.binaries)} {self.version}"

    def recipe(self) -> str:
        """A digest of everything that shapes the binaries: pins, sums, packages, ldflags."""
        digest = hashlib.sha256()
        assets = [f"{name}={','.join(files)}" for name, files in sorted(self.assets.items())]
        for part in (self.version, *self.binaries.values(), *self.ldflags, *assets):
            digest.update(part.encode() + b"\0")
        for name in ("go.mod", "go.sum"):
            digest.update((self.directory / name).read_bytes())
        return digest.hexdigest()[:16]

    def go_directive(self) -> tuple[int, ...]:
        """The module's ``go`` line (the oldest Go that may build it), e.g. ``(1, 26, 0)``."""
        found = re.search(r"^go (\d+(?:\.\d+)*)\s*$", (self.directory / "go.mod").read_text(), re.M)
        if found is None:
            raise ValueError(f"{self.directory / 'go.mod'} has no go directive")
        return tuple(int(part) for part in found[1].split("."))


def kubernetes_module(release: Release) -> GoModule:
    return GoModule(
        directory_name=f"kubernetes-{release.minor}",
        upstream="k8s.io/kubernetes",
        version=release.kubernetes,
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kube_ldflags(release.kubernetes),
    )


def etcd_module(version: str) -> GoModule:
    # Named by the full version: Kubernetes minors may test with different patches of one etcd.
    return GoModule(
        directory_name=f"etcd-{version}",
        upstream="go.etcd.io/etcd/server/v3",
        version=version,
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
        ldflags=(f"-X go.etcd.io/etcd/api/v3/version.GitSHA={version}",),
    )


# kwok >= 0.8 has no built-in stages: it runs the Stage documents it is given. These are the
# ones kwok 0.7 built in for our flags (nodes initialised and kept Ready by status heartbeats,
# bound pods Ready, completed and deleted at once), read from the pinned kwok module itself.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat/node-heartbeat.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
KWOK = GoModule(
    directory_name="kwok",
    upstream="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}",),
    assets={"kwok-stages.yaml": KWOK_STAGES},
)


KUBE_SCORE = GoModule(
    directory_name="kube-score",
    upstream="github.com/zegl/kube-score",
    version=KUBE_SCORE_VERSION,
    binaries={"kube-score": "github.com/zegl/kube-score/cmd/kube-score"},
    ldflags=(f"-X main.version={KUBE_SCORE_VERSION}",),
)


def helm_module(major: int) -> GoModule:
    version = HELM_VERSIONS[major]
    pkg = f"helm.sh/helm/v{major}"
    ldflags = [f"-X {pkg}/internal/version.version={version}"]
    ldflags.append(f"-X {pkg}/internal/version.gitTreeState=clean")
    directory = f"helm-v{major}"
    if major == 3 and (GOMOD_ROOT / directory / "go.mod").exists():  # absent only before `pin`
        # Helm 3 takes the Kubernetes version it assumes without a cluster (`helm template`,
        # `helm lint`) from ldflags, which upstream's Makefile derives from the client-go it
        # builds with; Helm 4 reads that client-go version from its own build info.
        client_go_minor = client_go_version(GOMOD_ROOT / directory)[1]
        for var in ("pkg/chartutil", "pkg/lint/rules"):
            ldflags.append(f"-X {pkg}/{var}.k8sVersionMajor=1")
            ldflags.append(f"-X {pkg}/{var}.k8sVersionMinor={client_go_minor}")
    return GoModule(
        directory_name=directory,
        upstream=pkg,
        version=version,
        binaries={"helm": f"{pkg}/cmd/helm"},
        ldflags=tuple(ldflags),
    )


def client_go_version(directory: Path) -> tuple[int, int, int]:
    """The k8s.io/client-go version a wrapper module's go.mod pins, e.g. ``(0, 37, 0)``."""
    found = re.search(
        r"^\s*k8s\.io/client-go v(\d+)\.(\d+)\.(\d+)", (directory / "go.mod").read_text(), re.M
    )
    if found is None:
        raise ValueError(f"{directory / 'go.mod'} pins no k8s.io/client-go")
    return int(found[1]), int(found[2]), int(found[3])


def modules(release: Release | None = None) -> tuple[GoModule, ...]:
    """Everything ``build`` makes for one Kubernetes release (default: the selected one)."""
    chosen = release or selected()
    return (
        kubernetes_module(chosen),
        etcd_module(chosen.etcd),
        KWOK,
        *(helm_module(major) for major in sorted(HELM_VERSIONS)),
        KUBE_SCORE,
    )


def all_modules() -> tuple[GoModule, ...]:
    """Every wrapper module of every supported release, each once."""
    seen: dict[str, GoModule] = {}
    for release in RELEASES:
        for module in modules(release):
            seen.setdefault(module.directory_name, module)
    return tuple(seen.values())


def cache_dir() -> Path:
    """Where built binaries live: ``$SHORTHOP_CACHE/bin`` (default ``~/.cache/shorthop/bin``)."""
    root = os.environ.get("SHORTHOP_CACHE") or str(Path.home() / ".cache" / "shorthop")
    return Path(root) / "bin"


def module_of(name: str, release: Release | None = None) -> GoModule:
    """The module that builds component ``name`` (``helm`` is the newest Helm major)."""
    if name == "helm":
        return helm_module(DEFAULT_HELM_MAJOR)
    for module in modules(release):
        if name in module.binaries:
            return module
    raise KeyError(f"unknown control-plane component {name!r}")


def cached_binary(module: GoModule, name: str) -> Path:
    return cache_dir() / f"{name}-{module.version}"


def binary_path(name: str, release: Release | None = None) -> Path:
    """The cached binary for a component, named ``<component>-<version>``; a ``.recipe`` file
    beside it records the build recipe, so a changed pin or flag rebuilds it."""
    return cached_binary(module_of(name, release), name)


def helm_path(major: int) -> Path:
    """The cached helm of one major (``helm-v3.22.0``, ``helm-v4.3.2``)."""
    return cached_binary(helm_module(major), "helm")


def cached_asset(module: GoModule, name: str) -> Path:
    """A run-time file taken from a module (``kwok-stages.yaml`` -> ``kwok-stages-v0.8.0.yaml``)."""
    stem, dot, suffix = name.partition(".")
    return cache_dir() / f"{stem}-{module.version}{dot}{suffix}"


def is_current(module: GoModule, name: str) -> bool:
    path = cached_binary(module, name)
    stamp = path.with_name(path.name + ".recipe")
    if not (path.exists() and stamp.exists()):
        return False
    if not all(cached_asset(module, asset).exists() for asset in module.assets):
        return False
    return stamp.read_text().strip() == module.recipe()
