"""``python -m e2e.controlplane build|up|down|status|versions|pin``: the Makefile's cluster targets.

``SHORTHOP_KUBERNETES_VERSION`` (``1.35``, ``1.35.4`` or ``v1.35.4``) picks the Kubernetes release
to build and run; unset, the newest supported. ``versions`` prints the supported releases,
``pin`` rewrites the Go wrapper modules after a pin changed in ``components.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from e2e.controlplane import build, cluster, components

DEFAULT_STATE_DIR = Path(os.environ.get("SHORTHOP_CLUSTER_DIR", ".cluster"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.controlplane", description=__doc__)
    parser.add_argument(
        "command",
        choices=["build", "up", "down", "status", "versions", "pin"],
        help="what to do with the local cluster",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where certificates, kubeconfig, logs and pids live (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "versions":
            return _versions()
        if args.command == "pin":
            from e2e.controlplane import pin

            pin.pin_all()
            return 0
        local = cluster.LocalCluster(args.state_dir.resolve())
        if args.command == "build":
            build.ensure_built()
        elif args.command == "up":
            local.up()
            print(f"export KUBECONFIG={local.kubeconfig}")
        elif args.command == "down":
            local.down()
            print(f"stopped the cluster of {local.state_dir}")
        else:
            states = local.running()
            if not states:
                print(f"no cluster recorded in {local.state_dir}")
                return 1
            for name, alive in states.items():
                print(f"{name:26} {'running' if alive else 'stopped'} (pid {local.pids()[name]})")
            for name, pid in local.extra_pids().items():
                alive = cluster.is_alive(pid)
                print(f"{name:26} {'running' if alive else 'stopped'} (pid {pid}, stops with it)")
            return 0 if all(states.values()) else 1
    except (build.BuildError, cluster.ClusterError, components.UnsupportedVersion) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _versions() -> int:
    chosen = components.selected()
    for release in components.RELEASES:
        mark = "*" if release == chosen else " "
        print(f"{mark} Kubernetes {release.kubernetes}  etcd {release.etcd}")
    helm = ", ".join(f"helm {v}" for _, v in sorted(components.HELM_VERSIONS.items()))
    print(f"  kwok {components.KWOK_VERSION}, {helm} (every release)")
    print(f"  (* = selected; set {components.VERSION_ENV} to one of {components.supported()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
