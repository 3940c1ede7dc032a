"""Build the control-plane binaries from Go sources into the cache, once per pinned version.

A cold build of kube-apiserver and friends takes many minutes on two cores, so this prints what it
builds, which version and the elapsed time every half minute. A binary already in the cache for the
pinned version is not rebuilt. What is built is the Kubernetes release that
``SHORTHOP_KUBERNETES_VERSION`` selects (default: the newest supported), its etcd, kwok and both
Helm majors. Go's own module and build caches (GOMODCACHE, GOCACHE) are left at their defaults so
a second machine-local run is fast even after a version bump.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from e2e.controlplane import components


class BuildError(RuntimeError):
    """A Go build failed; the message carries the tail of the compiler output."""


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOTOOLCHAIN"] = "local"
    # The checksum database is not reachable from CI machines; the checked-in go.sum files pin
    # every module hash instead, and -mod=readonly refuses to change them.
    env.setdefault("GOSUMDB", "off")
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    return env


def _say(message: str) -> None:
    print(f"[controlplane] {message}", flush=True)


def missing(release: components.Release | None = None) -> list[components.GoModule]:
    """Modules of a release (default: the selected one) with a binary not yet in the cache."""
    return [
        module
        for module in components.modules(release)
        if not all(components.is_current(module, name) for name in module.binaries)
    ]


def _heartbeat(label: str, started: float, done: threading.Event) -> None:
    while not done.wait(30):
        _say(f"  still building {label} ({time.monotonic() - started:.0f}s)")


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check_go(todo: list[components.GoModule]) -> str:
    """Return the Go version, or raise a BuildError saying what to install. The minimum is the
    newest ``go`` directive among the modules to build (Kubernetes 1.37 says 1.26.0)."""
    need = max((module.go_directive() for module in todo), default=(1, 0))
    wanted = ", ".join(f"{m.directory_name} needs {_dotted(m.go_directive())}" for m in todo)
    if shutil.which("go") is None:
        raise BuildError(
            f"the 'go' command is not on PATH; install Go >= {_dotted(need)} to build the "
            f"control plane ({wanted})"
        )
    proc = subprocess.run(
        ["go", "env", "GOVERSION"], env=go_env(), capture_output=True, text=True, check=False
    )
    found = proc.stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", found)
    if proc.returncode != 0 or match is None:
        raise BuildError(
            f"could not read the Go version ({proc.stderr.strip() or found!r}); "
            f"install Go >= {_dotted(need)}"
        )
    have = (int(match[1]), int(match[2]), int(match[3] or 0))
    if have < need + (0,) * (3 - len(need)):
        raise BuildError(
            f"Go {found} is too old for the pinned modules ({wanted}); install Go >= "
            f"{_dotted(need)} (builds run with GOTOOLCHAIN=local, so no toolchain is downloaded)"
        )
    return found


def build_module(module: components.GoModule) -> None:
    """Build the binaries of one wrapper module into the cache (atomically: temp dir, rename)."""
    cache = components.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    label = module.label
    _say(f"building {label} from source (module gomod/{module.directory_name})")
    started = time.monotonic()
    done = threading.Event()
    threading.Thread(target=_heartbeat, args=(label, started, done), daemon=True).start()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [
            "go", "build", "-trimpath",
            "-ldflags", " ".join(("-s", "-w", *module.ldflags)),
            "-o", tmp + os.sep,
            *module.binaries.values(),
        ]  # fmt: skip
        proc = subprocess.run(
            command,
            cwd=module.directory,
            env=go_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        done.set()
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BuildError(f"go build of {label} failed (exit {proc.returncode}):\n{tail}")
        for asset, files in module.assets.items():
            _write_asset(module, files, Path(tmp) / asset)
            os.replace(Path(tmp) / asset, components.cached_asset(module, asset))
        for name, package in module.binaries.items():
            target = components.cached_binary(module, name)
            os.replace(Path(tmp) / _go_binary_name(package), target)
            target.with_name(target.name + ".recipe").write_text(module.recipe() + "\n")
    _say(f"built {label} in {time.monotonic() - started:.0f}s")


def _write_asset(module: components.GoModule, files: tuple[str, ...], target: Path) -> None:
    """Concatenate files of the module's upstream source (as the module cache holds it, checked
    against go.sum by the build) into one multi-document YAML file."""
    proc = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module.upstream],
        cwd=module.directory, env=go_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    source = Path(proc.stdout.strip())
    if proc.returncode != 0 or not source.is_dir():
        raise BuildError(f"cannot find the source of {module.upstream}: {proc.stderr.strip()}")
    parts = []
    for relative in files:
        path = source / relative
        if not path.is_file():
            raise BuildError(f"{module.upstream}@{module.version} has no {relative}")
        parts.append(f"# {module.upstream}@{module.version}/{relative}\n{path.read_text()}")
    target.write_text("---\n".join(parts))


def _go_binary_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package: its last path element, skipping a
    major-version suffix (``go.etcd.io/etcd/server/v3`` -> ``server``)."""
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def ensure_built(release: components.Release | None = None) -> None:
    """Build whatever the cache lacks for a release (default: the selected one); a no-op when
    every pinned binary is present."""
    chosen = release or components.selected()
    todo = missing(chosen)
    if not todo:
        _say(f"Kubernetes {chosen.kubernetes}: binaries cached in {components.cache_dir()}")
        return
    _say(f"Kubernetes {chosen.kubernetes}: using {check_go(todo)}")
    started = time.monotonic()
    for module in todo:
        build_module(module)
    _say(f"control plane built in {time.monotonic() - started:.0f}s")


def main() -> int:
    try:
        ensure_built()
    except (BuildError, components.UnsupportedVersion) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
