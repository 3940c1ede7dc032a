"""API-server faults: the operator keeps working, with retries and backoff, while the API server
throttles or fails a share of its requests, and rides through restarts of kube-apiserver and
etcd; afterwards every invariant of ``chaos.checks`` holds.

Test A (a fault-injecting proxy, :mod:`chaos.proxy`): the operator runs as the chart's
ServiceAccount (the chart's own RBAC, rendered with ``helm template``) through a TLS proxy on
loopback that answers a share of its requests 429/500/503, delays them, resets the connection
before or after the API server acted, and cuts watches at random. Each round places several
multi-replica deployments, scales one up and deletes another; all must converge with the faults
still on, the operator must never exit and log no traceback. Recorded: what the proxy injected,
the convergence times, and the operator's reconcile-error and bind counters (its retries).

Test B (restarts, on a control plane of its own: restarts would disturb the session's other
tests): while deployments are being placed, kube-apiserver is SIGKILLed and started again on the
same port; later etcd is (the API server then fails every request until it reconnects); at full
scale, both at once too. Each restart comes at the first pod the operator creates or deletes for
the change, as a watch shows it, and the test fails if the change was already done by then. The
operator's informers must list and watch again, its lease must survive (the outage is shorter
than its renew deadline), and placements must converge with no GPU double-booked and no orphan.
Recorded: each outage and the convergence time after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from shorthop.topology import fake

from chaos import checks, full, ops, pick
from chaos.fixtures import OperatorFactory, poll, recorder, settle_namespace
from chaos.proxy import FAILURES, FaultProxy, Faults, proxied_kubeconfig
from e2e import fixtures as e2e_fixtures
from tests import kube, watching
from tests import operator_harness as oh

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "inferencedeployments.shorthop.io.yaml"
# Two prefill replicas of 4 GPUs and two decode replicas of 8 GPUs (one pod each): 24 GPUs.
ROLES = [("prefill", 2, 4, 4), ("decode", 2, 8, 8)]
SCALED = [("prefill", 2, 4, 4), ("decode", 3, 8, 8)]
PODS = sum(replicas * (per_replica // per_pod) for _, replicas, per_replica, per_pod in ROLES)
CONVERGE_SECONDS = pick(90.0, 150.0)
ACT_SECONDS = 60.0  # at most this long for the operator to start acting on a change
WATCH_CUT, CUT_AFTER = 0.5, (2.0, 12.0)  # half the watches are cut after 2-12 s
# The chart's account, its RBAC, and the Lease the chart creates (the operator only updates it).
RBAC_KINDS = {
    "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Lease",
}  # fmt: skip


# -- shared helpers ---------------------------------------------------------------------------


def _custom(cluster: kube.Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def _create(cluster: kube.Cluster, doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    _custom(cluster).create_namespaced_custom_object(
        checks.GROUP, checks.VERSION, meta["namespace"], checks.PLURAL, doc
    )


def _patch_spec(cluster: kube.Cluster, doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    _custom(cluster).patch_namespaced_custom_object(
        checks.GROUP, checks.VERSION, meta["namespace"], checks.PLURAL, meta["name"],
        {"spec": doc["spec"]},
    )  # fmt: skip


def _delete(cluster: kube.Cluster, namespace: str, name: str) -> None:
    _custom(cluster).delete_namespaced_custom_object(
        checks.GROUP, checks.VERSION, namespace, checks.PLURAL, name
    )


def converged(
    cluster: kube.Cluster, ns: str, names: set[str], nodes: list[str], *, collected: bool = True
) -> list[str]:
    """Violations of ``names`` (which must exist and run, and be the only deployments left) and
    of the pool's nodes; with ``collected``, orphans too (the pods of deleted deployments must
    have been garbage-collected: kube-controller-manager's work, not the operator's)."""
    pods = checks.list_pods(cluster.core, ns)
    bodies = {d["metadata"]["name"]: d for d in checks.list_deployments(cluster.api, ns)}
    out = [f"{name} is gone" for name in sorted(names - set(bodies))]
    for name in sorted(names & set(bodies)):
        out += checks.deployment_violations(bodies[name], pods)
    out += [f"{name} should be gone" for name in sorted(set(bodies) - names)]
    pool = [n for n in checks.list_nodes(cluster.core) if n["metadata"]["name"] in set(nodes)]
    out += checks.node_violations(pool, pods)
    if collected:
        out += checks.orphans(pods, list(bodies.values()))
    return out


def _wait_leading(sup: ops.Supervisor, timeout: float) -> float:
    started = time.monotonic()
    kube.wait_for(f"{sup.operator.identity} to lead", sup.operator.leading, timeout=timeout)
    return round(time.monotonic() - started, 2)


def _relists(log: str) -> int:
    """How often the informers listed again after a failed list or watch."""
    return log.count("watch interrupted") + log.count("list/watch failed")


# -- test A: a fault-injecting proxy ----------------------------------------------------------


def _chart_rbac(
    cluster: kube.Cluster, release: str, namespace: str, watched: str, home: Path
) -> str:
    """The chart's ServiceAccount, RBAC (watching one namespace) and Lease, applied; the
    manifest."""
    binary = e2e_fixtures.helm_binary()
    if binary is None:
        pytest.skip("no helm: run `make controlplane`")
    helm = e2e_fixtures.Helm(binary, cluster.kubeconfig, home)
    rendered = helm(
        "template", release, str(e2e_fixtures.CHART), "--namespace", namespace,
        "--set-json", f'watchNamespaces=["{watched}"]',
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in RBAC_KINDS]
    manifest = yaml.safe_dump_all(docs)
    cluster.kubectl("apply", "-f", "-", input=manifest)
    return manifest


@pytest.fixture
def operator_account(
    cluster: kube.Cluster, lease_namespace: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A namespace to place in, and a token kubeconfig (for the real API server) of the chart's
    ServiceAccount, with the chart's RBAC for that namespace and for the Lease."""
    with cluster.namespace("apis") as ns:
        release = f"chaos-{uuid.uuid4().hex[:5]}"
        manifest = _chart_rbac(cluster, release, lease_namespace, ns, tmp_path / "helm")
        try:
            path = e2e_fixtures.service_account_kubeconfig(
                cluster,
                lease_namespace,
                e2e_fixtures.fullname(release),
                tmp_path / "sa.kubeconfig",
            )
            yield ns, path
        finally:
            settle_namespace(cluster, ns)
            cluster.kubectl("delete", "--ignore-not-found", "-f", "-", input=manifest, check=False)


def _round(
    cluster: kube.Cluster,
    operators: OperatorFactory,
    ns: str,
    account_kubeconfig: Path,
    pool: str,
    nodes: list[str],
    k: int,
    count: int,
    failing: float,
    workdir: Path,
) -> dict[str, Any]:
    faults = Faults.failing(failing, watch_cut=WATCH_CUT, cut_after=CUT_AFTER)
    proxy = FaultProxy.for_kubeconfig(
        account_kubeconfig, workdir / f"proxy{k}", faults, seed=k
    ).start()
    kubeconfig = proxied_kubeconfig(account_kubeconfig, proxy, workdir / f"proxy{k}.kubeconfig")
    op = operators.make(f"apis-{k}", kubeconfig=kubeconfig, namespaces=(ns,), lease_duration=15)
    sup = ops.Supervisor(op).start()
    marks: dict[str, float] = {}
    try:
        marks["lead_s"] = _wait_leading(sup, 60)
        names = {f"a{k}-{i}" for i in range(count)}
        started = time.monotonic()
        for name in sorted(names):
            _create(cluster, oh.deployment(name, ns, pool, ROLES))
        seconds, placed = poll(
            "placement", lambda: converged(cluster, ns, names, nodes), timeout=CONVERGE_SECONDS
        )
        marks["placed_s"] = round(seconds, 2)
        # Scale one up, delete another: surplus/missing pods and garbage collection.
        scaled, deleted = f"a{k}-0", f"a{k}-1"
        started = time.monotonic()
        _patch_spec(cluster, oh.deployment(scaled, ns, pool, SCALED))
        _delete(cluster, ns, deleted)
        names.discard(deleted)
        seconds, changed = poll(
            "scale and delete",
            lambda: converged(cluster, ns, names, nodes, collected=False),
            timeout=CONVERGE_SECONDS,
        )
        marks["changed_s"] = round(seconds, 2)
        seconds, orphaned = poll(
            "garbage collection",
            lambda: converged(cluster, ns, names, nodes),
            timeout=CONVERGE_SECONDS,
        )
        marks["collected_s"] = round(time.monotonic() - started, 2)
        errors = sup.counts("shorthop_reconcile_errors_total")
        binds = sup.counts("shorthop_binds_total")
    finally:
        sup.stop()
        proxy.stop()
    injected = proxy.counts()
    requests = injected.get("requests", 0)
    failed = sum(injected.get(kind, 0) for kind in FAILURES)
    return {
        "round": k,
        "deployments": count,
        "pods": count * PODS,
        "fault_share": round(faults.share, 3),
        "expected_failing_share": failing,
        "requests": requests,
        "failed_share": round(failed / requests, 3) if requests else 0.0,
        "injected": {k2: v for k2, v in sorted(injected.items()) if k2 != "requests"},
        "reconcile_errors": {k2: int(v) for k2, v in sorted(errors.items())},
        "binds": {k2: int(v) for k2, v in sorted(binds.items())},
        "operator_restarts": [rc for _, rc in sup.restarts],
        "relists": _relists(op.log),
        # A stopped operator hands its lease back; when that one call fails, the next round's
        # operator (another identity) waits for the lease to expire before it leads.
        "released_lease": "could not release the lease" not in op.log,
        **marks,
        "violations": placed + changed + orphaned,
    }


def test_operator_converges_through_a_faulty_api_server(
    cluster: kube.Cluster,
    operators: OperatorFactory,
    operator_account: tuple[str, Path],
    tmp_path: Path,
) -> None:
    ns, account_kubeconfig = operator_account
    # (deployments, share of requests that fail)
    rounds = pick([(3, 0.25)], [(4, 0.2), (4, 0.3), (8, 0.2), (8, 0.3), (12, 0.3)])
    record = recorder("apiserver")
    record.set(
        "proxy_plan",
        {
            "rounds": [{"deployments": c, "failing_share": f} for c, f in rounds],
            "weights": Faults().weights,
            "delay_s": list(Faults().delay),
            "retry_after_s": Faults().retry_after,
            "watch_cut": WATCH_CUT,
            "cut_after_s": list(CUT_AFTER),
            "deployment": "2 prefill x 4 GPUs + 2 decode x 8 GPUs (4 pods, 24 GPUs); "
            "then one scaled to 3 decode, another deleted",
        },
    )
    record.set("proxy_rounds", [])
    most = max(c for c, _ in rounds)
    # Three whole 8-GPU nodes per deployment, four with its prefill pods spread: room to spare.
    shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=most * 4 + 2)
    started = time.monotonic()
    results = []
    with oh.node_pool(cluster, shape, prefix="ap") as (pool, nodes):
        for k, (count, failing) in enumerate(rounds):
            result = _round(
                cluster, operators, ns, account_kubeconfig, pool, nodes, k, count, failing, tmp_path
            )
            results.append(result)
            record.append("proxy_rounds", result)
            print(
                f"[apiserver] round {k}: {count} deployments, {failing:.0%} failing: "
                f"placed {result.get('placed_s')}s, changed {result.get('changed_s')}s, "
                f"injected {result['injected']}, errors {result['reconcile_errors']}, "
                f"restarts {result['operator_restarts']}",
                flush=True,
            )
            settle_namespace(cluster, ns)
    record.set("proxy_seconds", round(time.monotonic() - started, 1))
    traces = ops.tracebacks(operators.logs())
    record.set("proxy_operator_tracebacks", len(traces))
    bad = [r for r in results if r["violations"]]
    assert not bad, yaml.safe_dump(bad)
    assert not [r for r in results if r["operator_restarts"]], yaml.safe_dump(results)
    assert not traces, traces[0]
    assert all(r["failed_share"] > 0 for r in results), "the proxy injected nothing"


# -- test B: kube-apiserver and etcd restarts -------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[kube.Cluster]:
    """A control plane of this test's own (restarting components would disturb the others)."""
    if os.environ.get(kube.KUBECONFIG_ENV):
        pytest.skip("restarts need the local control plane")
    from e2e.controlplane.cluster import LocalCluster

    local = LocalCluster(tmp_path / "cluster", tie_to_parent=True)
    local.up()
    try:
        own = kube.Cluster(kubeconfig=local.kubeconfig, local=local)
        own.kubectl("apply", "--server-side", "-f", str(CRD))
        own.wait_established("inferencedeployments.shorthop.io")
        yield own
    finally:
        local.down()


def _restart(own: kube.Cluster, what: str) -> float:
    """Restart etcd, kube-apiserver or both with SIGKILL (no graceful shutdown); the outage."""
    names = ("etcd", "kube-apiserver") if what == "both" else (what,)
    seconds: float = own.local.restart(*names, sig=signal.SIGKILL)
    return seconds


class KwokNudge:
    """kwok stands in for the kubelets, and kwok 0.7 drops a pod status patch that failed during
    the outage and never retries it (a kubelet would, at its next status sync): such pods stay
    bound but never Ready. A pod seen bound and not Ready for ``after`` seconds gets an
    annotation touched, which makes kwok play its stages again. (Restarting kwok instead costs
    40 s: a new kwok waits for the old one's node leases to expire.)"""

    def __init__(self, cluster: kube.Cluster, ns: str, after: float = 3.0) -> None:
        self.cluster = cluster
        self.ns = ns
        self.after = after
        self.seen: dict[str, float] = {}
        self.nudged = 0

    def __call__(self) -> None:
        now = time.monotonic()
        stuck = set()
        for pod in checks.list_pods(self.cluster.core, self.ns, checks.DEPLOYMENT_LABEL):
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            if pod["spec"].get("nodeName") and not ready:
                stuck.add(pod["metadata"]["name"])
        self.seen = {name: self.seen.get(name, now) for name in stuck}
        for name, since in self.seen.items():
            if now - since >= self.after:
                patch = {"metadata": {"annotations": {"chaos.shorthop.io/nudged": str(now)}}}
                with contextlib.suppress(client.ApiException):
                    self.cluster.core.patch_namespaced_pod(name, self.ns, patch)
                self.seen[name] = now
                self.nudged += 1


def test_operator_rides_through_apiserver_and_etcd_restarts(
    own_cluster: kube.Cluster, tmp_path: Path
) -> None:
    own = own_cluster
    record = recorder("apiserver")
    lease_ns = "shorthop-system"
    oh.ensure_namespace(own, lease_ns)
    ns = "restarts"
    oh.ensure_namespace(own, ns)
    factory = OperatorFactory(own, tmp_path / "operators", lease_ns)
    # Renew deadline 20 s: longer than any outage here, so the lease is kept through it.
    op = factory.make("restarts", namespaces=(ns,), lease_duration=30)
    sup = ops.Supervisor(op)
    # (change, what to restart): apply/scale/delete, then the restart right after it.
    plan: list[tuple[str, str]] = [("create", "kube-apiserver"), ("grow", "etcd")]
    if full():
        plan += [("shrink", "both"), ("create", "etcd"), ("grow", "kube-apiserver")]
    count = pick(3, 6)
    shape = fake.ClusterShape(hgx_units=1, nodes_per_unit=pick(16, 48))
    steps: list[dict[str, Any]] = []
    names: set[str] = set()
    record.set("restart_steps", [])
    started = time.monotonic()
    try:
        with oh.node_pool(own, shape, prefix="rs") as (pool, nodes):
            sup.start()
            lead_s = _wait_leading(sup, 60)
            for k, (change, what) in enumerate(plan):
                before = _pod_count(own, ns)
                # Watch first, then change: the restart comes at the first pod the operator
                # creates or deletes for the change, seen the moment it happens (mid-reconcile).
                pods = watching.pod_watch(own.core, namespace=ns, selector=checks.DEPLOYMENT_LABEL)
                pods.start()
                try:
                    kept = {
                        uid: p["metadata"]["labels"][checks.DEPLOYMENT_LABEL]
                        for uid, p in ((p["metadata"]["uid"], p) for p in pods.pods())
                        if not p["metadata"].get("deletionTimestamp")
                    }
                    victims: set[str] = set()
                    if change == "create":
                        new = {f"r{k}-{i}" for i in range(count)}
                        for name in sorted(new):
                            _create(own, oh.deployment(name, ns, pool, ROLES))
                        names |= new
                    elif change == "grow":
                        target = sorted(names)[0]
                        _patch_spec(own, oh.deployment(target, ns, pool, SCALED))
                        extra = f"r{k}-x"
                        _create(own, oh.deployment(extra, ns, pool, ROLES))
                        names.add(extra)
                    else:  # shrink: scale one down (back to ROLES), delete another
                        target, victim = sorted(names)[0], sorted(names)[-1]
                        _patch_spec(own, oh.deployment(target, ns, pool, ROLES))
                        _delete(own, ns, victim)
                        names.discard(victim)
                        victims.add(victim)
                    desired = _desired(own, ns)
                    changed_at = time.monotonic()
                    pods.wait_until(
                        "the operator acting on the change",
                        partial(_acting, kept=kept, victims=victims),
                        timeout=ACT_SECONDS,
                    )
                    acting = round(time.monotonic() - changed_at, 3)
                    at_restart = pods.pods()  # the last state seen before the restart
                    outage = _restart(own, what)
                finally:
                    pods.stop()
                pods_at_restart, bound_at_restart = _bound_count(at_restart)
                ready_at_restart = sum(1 for p in _live(at_restart) if _ready(p))
                mid_reconcile = _unfinished(at_restart, desired)
                nudge = KwokNudge(own, ns)

                seconds, violations = poll(
                    f"after restarting {what}",
                    partial(_nudged, nudge, own, ns, set(names), nodes),
                    timeout=CONVERGE_SECONDS,
                )
                collected, orphaned = poll(
                    "garbage collection",
                    partial(converged, own, ns, set(names), nodes),
                    timeout=CONVERGE_SECONDS,
                )
                step = {
                    "step": k,
                    "change": change,
                    "restarted": what,
                    "operator_acting_after_s": acting,
                    "mid_reconcile": mid_reconcile,
                    "pods_before": before,
                    "pods_at_restart": pods_at_restart,
                    "bound_at_restart": bound_at_restart,
                    "ready_at_restart": ready_at_restart,
                    "pods_desired": _desired(own, ns),
                    "outage_s": round(outage, 2),
                    "converged_after_restart_s": round(seconds, 2) if not violations else None,
                    "collected_after_restart_s": round(seconds + collected, 2),
                    "kwok_nudges": nudge.nudged,
                    "operator_restarts": len(sup.restarts),
                    "violations": violations + orphaned,
                }
                steps.append(step)
                record.append("restart_steps", step)
                print(f"[apiserver] restart step {step}", flush=True)
                if step["violations"]:
                    break
            errors = sup.counts("shorthop_reconcile_errors_total")
            binds = sup.counts("shorthop_binds_total")
            sup.stop()
    finally:
        sup.stop()
        factory.stop_all()
    log = "\n".join(factory.logs())
    record.set(
        "restarts",
        {
            "lead_s": lead_s,
            "lease_seconds": 30,
            "deployments": sorted(names),
            "reconcile_errors": {k: int(v) for k, v in sorted(errors.items())},
            "binds": {k: int(v) for k, v in sorted(binds.items())},
            "operator_restarts": [rc for _, rc in sup.restarts],
            "relists": _relists(log),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    traces = ops.tracebacks(factory.logs())
    record.set("restart_operator_tracebacks", len(traces))
    bad = [s for s in steps if s["violations"]]
    assert not bad, yaml.safe_dump(bad)
    assert len(steps) == len(plan)
    late = [s["step"] for s in steps if not s["mid_reconcile"]]
    assert not late, f"restarts that came after the operator had finished its change: {late}"
    assert not sup.restarts, f"the operator exited: {sup.restarts}\n{log[-3000:]}"
    assert not traces, traces[0]


def _nudged(
    nudge: KwokNudge, cluster: kube.Cluster, ns: str, names: set[str], nodes: list[str]
) -> list[str]:
    nudge()
    return converged(cluster, ns, names, nodes, collected=False)


def _pod_count(cluster: kube.Cluster, ns: str) -> int:
    pods = checks.list_pods(cluster.core, ns, checks.DEPLOYMENT_LABEL)
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp"))


def _live(state: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [p for p in state if not p["metadata"].get("deletionTimestamp")]


def _bound_count(state: list[dict[str, Any]]) -> tuple[int, int]:
    """(pods, bound pods) of the operator's, not being deleted."""
    live = _live(state)
    return len(live), sum(1 for p in live if p["spec"].get("nodeName"))


def _acting(
    state: Mapping[str, Mapping[str, Any]], *, kept: Mapping[str, str], victims: set[str]
) -> bool:
    """The operator has created a pod, or deleted one of a deployment it keeps (the pods of a
    deleted deployment are garbage-collected by kube-controller-manager, not by the operator)."""
    live = {uid for uid, p in state.items() if not p["metadata"].get("deletionTimestamp")}
    created = live - set(kept)
    deleted = {uid for uid, owner in kept.items() if owner not in victims and uid not in live}
    return bool(created or deleted)


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _unfinished(state: list[dict[str, Any]], desired: int) -> bool:
    """The change was not done yet: pods missing, unbound, not Ready (the operator has still to
    see them Ready and write the status) or still terminating. Binding is quick next to that,
    so a restart at the first pod event often finds every pod bound already."""
    pods, bound = _bound_count(state)
    ready = sum(1 for p in _live(state) if p["spec"].get("nodeName") and _ready(p))
    return pods != desired or bound != pods or ready != pods or len(state) != pods


def _desired(cluster: kube.Cluster, ns: str) -> int:
    return sum(
        r.replicas * r.pods_per_replica
        for body in checks.list_deployments(cluster.api, ns)
        for r in checks.shapes(body)
    )
