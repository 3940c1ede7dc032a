"""``python -m e2e.controlplane build|up|down|status`` — the Makefile's cluster targets."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from e2e.controlplane import build, cluster

DEFAULT_STATE_DIR = Path(os.environ.get("SHORTHOP_CLUSTER_DIR", ".cluster"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.controlplane", description=__doc__)
    parser.add_argument(
        "command",
        choices=["build", "up", "down", "status"],
        help="what to do with the local cluster",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where certificates, kubeconfig, logs and pids live (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    local = cluster.LocalCluster(args.state_dir.resolve())
    try:
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
    except (build.BuildError, cluster.ClusterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
