"""Section 5 of ``benchmarks.md`` (end-to-end throughput against kube-scheduler), from a
``Throughput``."""

from __future__ import annotations

from bench.fmt import dur, table
from bench.throughput import Throughput


def section(tp: Throughput | None) -> str:
    """Section 5 of ``benchmarks.md``: end-to-end throughput against kube-scheduler."""
    if tp is None:
        return "Not measured in this run (`--quick` or `--no-cluster`)."
    rows = [
        (
            "kube-scheduler (plain pods)",
            tp.pods,
            dur(tp.scheduler_seconds),
            f"{tp.scheduler_rate:.1f}",
        ),
        (
            f"shorthop, device plugin ({tp.deployments} InferenceDeployments of 8 pods)",
            tp.pods,
            dur(tp.shorthop_seconds),
            f"{tp.shorthop_rate:.1f}",
        ),
    ]
    dra = ""
    if tp.dra_seconds and tp.dra_rate and tp.dra_running_seconds:
        rows.append(
            (
                f"shorthop, DRA ({tp.deployments} InferenceDeployments of 8 pods)",
                tp.pods,
                dur(tp.dra_seconds),
                f"{tp.dra_rate:.1f}",
            )
        )
        dra = (
            " *shorthop, DRA*: the same nodes with their GPUs published in ResourceSlices as the "
            "NVIDIA DRA driver publishes them; per pod the operator also creates a ResourceClaim, "
            "writes its allocation (the planned devices) and reads every claim once before the "
            f"bind; every pod was Running {dur(tp.dra_running_seconds)} after the first create "
            "and every claim allocated."
        )
    elif tp.dra_failure:
        dra = f" *shorthop, DRA*: not measured in this run: {tp.dra_failure}."
    return (
        "A private local control plane (kube-apiserver, etcd, kube-scheduler, "
        f"kube-controller-manager and kwok, built from source) with {tp.nodes:,} fake GPU nodes "
        "(half GB200 NVL72 trays, half HGX H100). *kube-scheduler*: a client creates the pods (16 "
        "threads) and the clock stops when every pod has a node. *shorthop*: a client creates the "
        "InferenceDeployments (16 threads) and the clock stops when every pod is bound; the "
        "operator creates and binds every pod itself (`pods/binding`), writes status and events "
        "and one headless Service per role. Completion is seen by a pod watch in a process of its "
        "own, the same for both phases. Both phases start from the same empty nodes; every "
        f"shorthop pod was Running {dur(tp.shorthop_running_seconds)} after the first create. The "
        "operator is one Python process; the API server, etcd, kwok, the controllers and the "
        "operator share the machine's cores."
        + dra
        + "\n\n"
        + table(("who binds", "pods", "time to all bound", "pods/s"), rows, "lrrr")
        + f"\n\nRatio shorthop (device plugin) / kube-scheduler: **{tp.ratio:.2f}×**."
        + ("" if tp.ratio >= 1.0 else "\n\n" + THROUGHPUT_GAP)
    )


THROUGHPUT_GAP = """**Why the target is missed here.** Both phases saturate the two cores, so the
rate follows the CPU every process spends per pod. Beyond the create and the bind that both phases
make, each shorthop deployment costs the API server a custom-resource create and status
patches, two Service creates (after which kube-controller-manager writes the Endpoints and
EndpointSlices), and larger pods (environment, annotations, owner reference) to store and send
to every watcher; the operator itself is a Python process on the same cores, a quarter of whose
time is the serialised planning. Counted with the API server's `apiserver_request_total` and
`/proc` CPU times while developing: about 6.6 CPU-seconds for kube-scheduler's 512 pods against
about 10 for shorthop's (not part of this run's figures)."""
