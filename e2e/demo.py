"""``make demo``: shorthop placing two LLM deployments on a fake GPU cluster, end to end.

1. builds the control plane from source if needed, and starts it (state in ``.cluster/``);
2. applies the InferenceDeployment CRD and creates a fake GPU cluster: two GB200 NVL72 racks,
   two HGX H100 scalable units whose GPUs the NVIDIA DRA driver publishes (a ResourceSlice per
   node, as the driver does, and its ``gpu.nvidia.com`` DeviceClass), four L40S nodes (kwok keeps
   them Ready), with some GPUs already taken by background pods (on the HGX nodes through
   ResourceClaims);
3. installs the Helm chart with ``replicaCount=0`` (no image can run on fake nodes: kwok would
   show the operator pods Running on a fake GPU node although nothing runs) and a ResourceQuota
   of zero pods in the release namespace, so that not even a ``helm upgrade`` that resets the
   values puts operator pods there; runs the operator as a local background process that
   authenticates as the chart's ServiceAccount, so it has exactly the chart's permissions; its
   pid goes into ``.cluster/extra-pids.json`` so that ``make cluster-down`` stops it with the
   cluster;
4. applies ``docs/examples/deepseek-nvl72.yaml`` and ``docs/examples/llama-70b-h100.yaml``,
   waits until both are Running, prints where every pod went (on the HGX nodes with the exact
   devices of each pod's ResourceClaim), and draws the cluster with the placement on it into
   ``docs/demo-topology.png``.

Running it again reuses what is there (the cluster, the nodes, the release) and restarts the
operator with a fresh token.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shorthop.commands.plan import render_table
from shorthop.placement import snapshot
from shorthop.placement.plan import Assignment, Cost, Plan, PodKey
from shorthop.topology import levels
from shorthop.views import render

from e2e import dra as fdra
from e2e import fixtures as fx
from e2e.controlplane import __main__ as cli
from e2e.controlplane import build, cluster, components
from tests import kube
from tests import operator_harness as oh

RELEASE = "shorthop"
NAMESPACE = "shorthop-system"
OPERATOR = "shorthop-operator"  # its name in extra-pids.json
LEASE = "shorthop-leader"
EXAMPLES = (("deepseek-r1", "deepseek-nvl72.yaml"), ("llama-70b", "llama-70b-h100.yaml"))
USER_NAMESPACE = "default"  # where the examples say they go
PICTURE = fx.ROOT / "docs" / "demo-topology.png"
RACK = "topology.shorthop.io/rack"
NO_PODS = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "demo-no-operator-pods", "namespace": NAMESPACE},
    "spec": {"hard": {"pods": "0"}},
}
# Replica labels in the picture must fit a node box: "R1 decode-0", "70B prefill-2".
SHORT = {"deepseek-r1": "R1", "llama-70b": "70B"}


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def show(cluster_: kube.Cluster, *args: str) -> str:
    """Run kubectl, print the command and its output."""
    print(f"\n$ kubectl {' '.join(args)}")
    out = cluster_.kubectl(*args).stdout.rstrip()
    print(out, flush=True)
    return out


def start_cluster(local: cluster.LocalCluster) -> kube.Cluster:
    states = local.running()
    if states and all(states.values()):
        step(f"the local control plane is already running ({local.state_dir})")
    else:
        step("starting the local control plane (the first run builds it from source)")
        local.down()  # whatever is left of an earlier, partly dead cluster
        local.up()
    return kube.Cluster(kubeconfig=local.kubeconfig, local=local)


def apply_crd(cluster_: kube.Cluster) -> None:
    step("applying the InferenceDeployment CRD")
    cluster_.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(fx.CRD))
    cluster_.wait_established("inferencedeployments.shorthop.io")


def create_nodes(cluster_: kube.Cluster) -> fdra.DraCluster:
    shape = dataclasses.replace(fx.SHAPE, dra=frozenset({"hgx"}))
    gpus = fdra.dra_cluster(
        shape,
        pool=None,
        background_namespace="background",
        occupancy=fx.BACKGROUND_OCCUPANCY,
        busy=fx.BACKGROUND_NODES,
        seed=7,
    )
    total = sum(int(n["metadata"]["labels"]["nvidia.com/gpu.count"]) for n in gpus.nodes)
    held = sum(len(fdra.allocated_devices(c)) for c in gpus.background_claims)
    step(
        f"creating the fake GPU cluster: {len(gpus.nodes)} nodes, {total} GPUs "
        f"(2 GB200 NVL72 racks, 2 HGX H100 units of 8 nodes published through DRA, 4 L40S "
        f"nodes); {len(gpus.background_pods) + len(gpus.plugin_pods)} background pods take "
        f"{held + fdra.plugin_gpus(gpus)} GPUs"
    )
    fdra.create(cluster_, gpus)
    return gpus


def install_chart(cluster_: kube.Cluster, local: cluster.LocalCluster) -> None:
    binary = str(components.binary_path("helm"))
    step(
        f"installing the chart: helm upgrade --install {RELEASE} charts/shorthop -n {NAMESPACE} "
        "--set replicaCount=0"
    )
    helm = fx.Helm(binary, cluster_.kubeconfig, local.state_dir / "helm")
    oh.ensure_namespace(cluster_, NAMESPACE)
    # No pods at all in the release namespace: an upgrade without the demo's values (replicas 2,
    # no nodeSelector) is refused pods by quota admission instead of putting them on fake nodes.
    cluster_.kubectl("apply", "-f", "-", input=json.dumps(NO_PODS))
    adopt_lease(cluster_)
    fx.install_chart(helm, RELEASE, NAMESPACE, "--set", "replicaCount=0")
    print(
        "    No operator pod runs in the cluster: the fake GPU nodes run no images (kwok would\n"
        "    show the pods Running anyway). The operator runs as a local process with the chart's\n"
        f"    ServiceAccount instead, so the Service {RELEASE}-metrics has no endpoints; its\n"
        f"    metrics are printed below. ResourceQuota {NAMESPACE}/{NO_PODS['metadata']['name']}\n"
        "    (pods: 0) keeps it so even after a `helm upgrade` that resets the values.",
        flush=True,
    )


def adopt_lease(cluster_: kube.Cluster) -> None:
    """The chart owns the Lease now; one an older operator created (a cluster kept from an
    earlier demo) is not the release's and would make the install fail: delete it."""
    found = cluster_.kubectl("get", "lease", LEASE, "-n", NAMESPACE, "-o", "json", check=False)
    if found.returncode != 0:
        return
    annotations = json.loads(found.stdout)["metadata"].get("annotations") or {}
    if annotations.get("meta.helm.sh/release-name") != RELEASE:
        cluster_.kubectl("delete", "lease", LEASE, "-n", NAMESPACE)


def start_operator(cluster_: kube.Cluster, local: cluster.LocalCluster) -> fx.Operator:
    local.stop_extra(OPERATOR)  # an operator from an earlier run
    workdir = local.state_dir / "operator"
    operator = fx.start_operator(
        cluster_, RELEASE, NAMESPACE, workdir, identity="demo", token_duration="24h"
    )
    assert operator.process.proc is not None
    local.record_extra_pid(OPERATOR, operator.process.proc.pid)
    step(
        f"started the operator as {operator.user} (pid {operator.process.proc.pid}, "
        f"log {workdir / 'demo.log'})"
    )
    operator.process.wait_leading(timeout=120)
    step(f"the operator leads (Lease {NAMESPACE}/{LEASE})")
    print(f"    {where(operator)}", flush=True)
    return operator


def where(operator: fx.Operator) -> str:
    """Where the running operator's metrics, health endpoints and log are."""
    process = operator.process
    return (
        f"metrics: http://127.0.0.1:{process.metrics_port}/metrics; "
        f"health: http://127.0.0.1:{process.health_port}/healthz and /readyz; "
        f"log: {process.workdir / (process.identity + '.log')}"
    )


def apply_examples(cluster_: kube.Cluster, operator: fx.Operator) -> None:
    files = [str(fx.EXAMPLES / path) for _, path in EXAMPLES]
    shown = ", ".join(Path(f).relative_to(fx.ROOT).as_posix() for f in files)
    step(f"applying the examples: {shown}")
    cluster_.kubectl("apply", *(arg for f in files for arg in ("-f", f)))
    started = time.monotonic()
    for name, _ in EXAMPLES:
        try:
            oh.wait_running(cluster_, USER_NAMESPACE, name, timeout=120)
        except AssertionError:
            status = oh.get_infd(cluster_, USER_NAMESPACE, name).get("status") or {}
            raise AssertionError(
                f"{name} is {status.get('phase')}: {status.get('message')}\n"
                f"operator log: {operator.process.workdir / (operator.process.identity + '.log')}"
            ) from None
    step(f"both deployments are Running ({time.monotonic() - started:.1f}s after kubectl apply)")


def live_plan(body: dict[str, Any]) -> Plan:
    """A Plan built from the status the operator wrote, for ``shorthop plan``'s table."""
    status = body["status"]
    assignments = []
    for replica in status["replicas"]:
        for pod in replica["pods"]:
            index = int(pod["name"].rsplit("-", 1)[1])
            key = PodKey(replica["role"], int(replica["replica"]), index)
            assignments.append(Assignment(key, pod["node"], 0, tuple(pod["gpus"])))
    cost = status.get("cost") or {}
    return Plan(
        feasible=True,
        assignments=tuple(assignments),
        cost=Cost(int(cost.get("intraReplica", 0)), float(cost.get("traffic", 0.0))),
        tiers=dict(status.get("tiers") or {}),
        replica_tiers={(r["role"], int(r["replica"])): r["tier"] for r in status["replicas"]},
        strategy="the shorthop operator",
    )


def with_racks(table: str, rack: dict[str, str]) -> str:
    """``shorthop plan``'s table with a RACK column after NODE (cells hold no spaces)."""
    lines = table.splitlines()
    blank = lines.index("")
    header = ["ROLE", "REPLICA", "POD", "NODE", "RACK", "GPUS", "REPLICA TIER"]
    rows = [header]
    for line in lines[1:blank]:
        cells = line.split()
        rows.append([*cells[:4], rack.get(cells[3], ""), *cells[4:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    # Keep the tiers and the cost; drop "planned in ... ms", which is about offline planning.
    return "\n".join(body + lines[blank:-1])


def report(cluster_: kube.Cluster, gpus: fdra.DraCluster) -> dict[str, dict[int, str]]:
    """Print the placements; return node -> GPU -> replica label for the picture."""
    show(cluster_, "get", "infd", "-n", USER_NAMESPACE, "-o", "wide")
    rack = {n["metadata"]["name"]: n["metadata"]["labels"].get(RACK, "") for n in gpus.nodes}
    placement: dict[str, dict[int, str]] = {}
    for name, _ in EXAMPLES:
        body = oh.get_infd(cluster_, USER_NAMESPACE, name)
        print(f"\n--- {name}: where every pod went (from its status) ---")
        print(with_racks(render_table(live_plan(body), name, 0.0), rack))
        print("modeled KV-cache transfer per prefill->decode pair:")
        for t in body["status"]["kvTransfers"]:
            print(f"  {t['prefill']} -> {t['decode']}: {t['tier']}, {t['modeledMs']} ms")
        for replica in body["status"]["replicas"]:
            label = f"{SHORT[name]} {replica['role']}-{replica['replica']}"
            for pod in replica["pods"]:
                for gpu in pod["gpus"]:
                    placement.setdefault(pod["node"], {})[int(gpu)] = label
    print("\n--- on the DRA nodes: each pod's ResourceClaim, allocated by shorthop ---")
    show(cluster_, "get", "resourceclaims", "-n", USER_NAMESPACE)
    for name, _ in EXAMPLES:
        body = oh.get_infd(cluster_, USER_NAMESPACE, name)
        for replica in body["status"]["replicas"]:
            for pod in replica["pods"]:
                if pod.get("devices"):
                    print(f"  {pod['name']}: {pod['node']} {', '.join(pod['devices'])}")
    return placement


def draw(cluster_: kube.Cluster, placement: dict[str, dict[int, str]]) -> None:
    kinds = "nodes,pods,resourceslices,resourceclaims"
    listed = json.loads(cluster_.kubectl("get", kinds, "-A", "-o", "json").stdout)
    of = {k: [o for o in listed["items"] if o["kind"] == k] for k in
          ("Node", "Pod", "ResourceSlice", "ResourceClaim")}  # fmt: skip
    snap = snapshot.build(
        of["Node"], of["Pod"], levels.preset("plain"),
        resource_slices=of["ResourceSlice"], claims=of["ResourceClaim"],
    )  # fmt: skip
    drawing = render.render(snap, str(PICTURE), placement=placement)
    width, height = render.pixel_size(drawing, str(PICTURE))
    step(
        f"drew the cluster with the placement on it: {PICTURE.relative_to(fx.ROOT)} "
        f"({width}x{height} pixels; R1 = deepseek-r1, 70B = llama-70b)"
    )


def main() -> int:
    local = cluster.LocalCluster(cli.DEFAULT_STATE_DIR.resolve())
    started = time.monotonic()
    try:
        cluster_ = start_cluster(local)
        apply_crd(cluster_)
        gpus = create_nodes(cluster_)
        install_chart(cluster_, local)
        operator = start_operator(cluster_, local)
        apply_examples(cluster_, operator)
        placement = report(cluster_, gpus)
        print()
        draw(cluster_, placement)
    except (
        build.BuildError,
        cluster.ClusterError,
        subprocess.CalledProcessError,
        AssertionError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kubectl = components.binary_path("kubectl")
    pid = operator.process.proc.pid if operator.process.proc else "?"
    port = operator.process.metrics_port
    step(f"done in {time.monotonic() - started:.0f}s")
    print(
        f"\nThe cluster and the operator keep running. Look around with kubectl:\n"
        f"  export KUBECONFIG={local.kubeconfig}\n"
        f"  alias kubectl={kubectl}\n"
        f"  kubectl get infd,pods -o wide\n"
        f"  kubectl describe infd deepseek-r1\n"
        f"  kubectl get nodes -L nvidia.com/gpu.product,{RACK}\n"
        f"The operator (pid {pid}):\n"
        f"  {where(operator)}\n"
        f"  e.g. curl -s http://127.0.0.1:{port}/metrics | grep ^shorthop_\n"
        f"Its token lasts 24 h; `make demo` again starts a fresh one. See docs/operations.md for\n"
        f"what the log, the events and the metrics say. Stop everything with: make cluster-down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
