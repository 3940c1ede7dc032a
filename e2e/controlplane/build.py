"""Build the control-plane binaries from Go sources into the cache, once per pinned version.

A cold build of kube-apiserver and friends takes many minutes on two cores, so this prints what it
builds, which version and the elapsed time every half minute. A binary already in the cache for the
pinned version is not rebuilt. Go's own module and build caches (GOMODCACHE, GOCACHE) are left at
their defaults so a second machine-local run is fast even after a version bump.
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


def _go_env() -> dict[str, str]:
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


def missing() -> list[components.GoModule]:
    """Modules with at least one binary not yet in the cache."""
    return [
        module
        for module in components.MODULES
        if not all(components.is_current(name) for name in module.binaries)
    ]


def _heartbeat(label: str, started: float, done: threading.Event) -> None:
    while not done.wait(30):
        _say(f"  still building {label} ({time.monotonic() - started:.0f}s)")


MIN_GO = (1, 24)


def check_go() -> str:
    """Return the Go version, or raise a BuildError saying what to install."""
    need = ".".join(map(str, MIN_GO))
    if shutil.which("go") is None:
        raise BuildError(
            f"the 'go' command is not on PATH; install Go >= {need} to build the control plane"
        )
    proc = subprocess.run(
        ["go", "env", "GOVERSION"], env=_go_env(), capture_output=True, text=True, check=False
    )
    found = proc.stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", found)
    if proc.returncode != 0 or match is None:
        raise BuildError(
            f"could not read the Go version ({proc.stderr.strip() or found!r}); "
            f"install Go >= {need}"
        )
    if (int(match[1]), int(match[2])) < MIN_GO:
        raise BuildError(
            f"Go {found} is too old: the control plane needs Go >= {need} (GOTOOLCHAIN=local)"
        )
    return found


def build_module(module: components.GoModule) -> None:
    """Build the binaries of one wrapper module into the cache (atomically: temp dir, rename)."""
    cache = components.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    label = f"{', '.join(module.binaries)} {module.version}"
    _say(f"building {label} from source (module {module.directory.name})")
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
            env=_go_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        done.set()
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            raise BuildError(f"go build of {label} failed (exit {proc.returncode}):\n{tail}")
        for name, package in module.binaries.items():
            target = components.binary_path(name)
            os.replace(Path(tmp) / _go_binary_name(package), target)
            target.with_name(target.name + ".recipe").write_text(module.recipe() + "\n")
    _say(f"built {label} in {time.monotonic() - started:.0f}s")


def _go_binary_name(package: str) -> str:
    """The file name `go build -o DIR/` gives a main package: its last path element, skipping a
    major-version suffix (``go.etcd.io/etcd/server/v3`` -> ``server``)."""
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]):
        return parts[-2]
    return parts[-1]


def ensure_built() -> None:
    """Build whatever the cache lacks; a no-op when every pinned binary is present."""
    todo = missing()
    if not todo:
        _say(f"binaries cached in {components.cache_dir()}")
        return
    _say(f"using {check_go()}")
    started = time.monotonic()
    for module in todo:
        build_module(module)
    _say(f"control plane built in {time.monotonic() - started:.0f}s")


def main() -> int:
    try:
        ensure_built()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
