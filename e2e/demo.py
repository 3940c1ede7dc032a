"""``make demo``: bring the local control plane up and show that it is healthy.

The cluster keeps running afterwards so you can use kubectl against it; ``make cluster-down``
stops it.
"""

from __future__ import annotations

import subprocess
import sys

from e2e.controlplane import __main__ as cli
from e2e.controlplane import build, cluster, components


def main() -> int:
    local = cluster.LocalCluster(cli.DEFAULT_STATE_DIR.resolve())
    try:
        states = local.running()
        if not states or not all(states.values()):
            local.down()  # stops whatever is left of an earlier, partly dead cluster
            local.up()
        kubectl = [str(components.binary_path("kubectl")), f"--kubeconfig={local.kubeconfig}"]
        print("\n$ kubectl get --raw /readyz")
        subprocess.run([*kubectl, "get", "--raw", "/readyz"], check=True)
        print("\n\n$ kubectl version")
        subprocess.run([*kubectl, "version"], check=True)
    except (build.BuildError, cluster.ClusterError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nThe cluster is running. Use it with:\n"
        f"  export KUBECONFIG={local.kubeconfig}\n"
        f"  {components.binary_path('kubectl')} get nodes\n"
        f"Stop it with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
