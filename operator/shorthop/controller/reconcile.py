"""Reconcile one InferenceDeployment: make the cluster match its spec, then report.

Level-based and idempotent: every visit reads the current state (the deployment, its pods, the
cluster snapshot) and acts only on differences, so a second visit of the same generation writes
nothing. All state lives in the API: pods carry their role/replica/pod labels and GPU annotation,
the status carries the last placement; a restarted operator picks up from there.

One visit, in order:

1. validate the spec (anything the schema could not check) -> ``Invalid`` + event, stop;
2. sort the pods: healthy, lost (node deleted / NotReady / cordoned, pod failed), surplus (scale
   down: the replicas whose removal costs least), stale (template changed: one replica at a time),
   created-but-unbound (a crash between create and bind), strays of an older deployment of the
   same name; delete what must go (force for pods on vanished or NotReady nodes);
3. plan the missing pods with the healthy ones fixed (``placement.solver``); previous GPUs of a
   replica being replaced are reused when still free;
4. create and bind the new pods in parallel; the GPUs are *assumed* before binding so no other
   plan can take them; a rejected bind deletes the round's new pods (gang) and re-plans later with
   backoff;
5. ensure one headless Service per role; write the status if it changed; emit events and metrics.

After binding, the deployment's visits wait until the watch shows those binds
(:mod:`~shorthop.controller.expectations`), so a visit never plans or binds the same pods twice
and the status is written once, from the bound pods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from shorthop import manifest
from shorthop.api import models
from shorthop.controller import faults, render, status
from shorthop.controller.binder import BindCode, Binder, PodRef
from shorthop.controller.expectations import Expectations
from shorthop.controller.kube import Kube, KubeError
from shorthop.controller.live import LiveCluster, PodRecord
from shorthop.errors import SpecError
from shorthop.metrics import Metrics
from shorthop.placement import objective, request, snapshot, solver
from shorthop.placement.plan import Assignment, PodKey, Reason
from shorthop.placement.snapshot import mask_of

log = logging.getLogger("shorthop.reconcile")
COMPONENT = "shorthop"
EVENT_REPEAT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the work queue does next with the key."""

    retry: bool = False  # back off and come back (errors, unschedulable)
    after: float | None = None  # come back after this many seconds (pods still terminating)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """How creating and binding one pod went."""

    key: str  # namespace/name
    uid: str | None
    created: bool  # this visit created it
    code: BindCode
    message: str


@dataclass
class _Sorted:
    healthy: dict[PodKey, PodRecord]
    unbound: dict[PodKey, PodRecord]
    terminating: set[str]
    delete: list[tuple[PodRecord, bool, str]]  # pod, force, why
    lost: list[str]


class Reconciler:
    """Owns the decision logic; safe to call from one worker thread at a time."""

    def __init__(
        self,
        kube: Kube,
        live: LiveCluster,
        binder: Binder,
        metrics: Metrics,
        *,
        scheduler_name: str = "shorthop",
        workers: int = 64,
    ) -> None:
        self.kube = kube
        self.live = live
        self.binder = binder
        self.metrics = metrics
        self.scheduler_name = scheduler_name
        self.deployments: dict[str, Mapping[str, Any]] = {}  # latest bodies, fed by kopf
        self.unschedulable: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shorthop-api")
        self._place_lock = threading.Lock()
        self._events: dict[tuple[str, str, str], float] = {}
        self._services: set[tuple[str, str]] = set()
        self._tier_pods: dict[str, Counter[str]] = {}
        self.expectations = Expectations(on_expire=live.forget)

    # -- entry point -----------------------------------------------------------------------

    def reconcile(self, key: str) -> Outcome:
        body = self.deployments.get(key)
        if body is None:
            self._forget(key)
            return Outcome()
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return Outcome()
        try:
            return self._reconcile(key, body)
        except KubeError as exc:
            self.metrics.errors.labels(reason=f"http-{exc.status}").inc()
            log.warning("reconcile %s: %s", key, exc)
            return Outcome(retry=True)

    def _reconcile(self, key: str, body: Mapping[str, Any]) -> Outcome:
        # The cache has not shown this deployment's last binds yet: acting now would plan and
        # bind those pods again. The pods' watch events wake the key; the delay is a fallback.
        left = self.expectations.waiting(key, self._observed)
        if left > 0:
            return Outcome(after=left)
        meta = body["metadata"]
        uid, generation = str(meta.get("uid")), meta.get("generation")
        old = dict(body.get("status") or {})
        snap = self.live.snapshot()
        # 1. validate
        try:
            infd = manifest.parse_deployment(body)
            req = request.from_spec(infd.spec, snap.index.tiers, name=infd.metadata.name)
            for i, role in enumerate(infd.spec.roles):
                render.check_template(role, i)
        except SpecError as exc:
            self.metrics.errors.labels(reason="invalid-spec").inc()
            self._write_status(key, body, status.invalid(generation, str(exc), old))
            self._event(body, "InvalidSpec", str(exc), warning=True)
            return Outcome()
        # 2. sort the pods and delete what must go
        pods = self.live.pods_of(key)
        sorted_pods = self._sort(infd, uid, pods, old)
        for pod, force, why in sorted_pods.delete:
            self.kube.delete_pod(pod.namespace, pod.name, force=force, uid=pod.uid)
            faults.point("after-delete")
            # Its name is busy until the deletion is seen; its replacement comes next visit.
            sorted_pods.terminating.add(pod.key)
            log.info("deleted %s: %s", pod.key, why)
        if sorted_pods.lost:
            self._event(body, "Repairing", "; ".join(sorted(set(sorted_pods.lost))), warning=True)
        # 3. plan what is missing
        reasons: list[Reason] = []
        outcome = Outcome(after=1.0 if sorted_pods.terminating else None)
        existing = set(sorted_pods.healthy) | set(sorted_pods.unbound)
        if _missing_pods(infd, existing) or sorted_pods.unbound:
            # Plans are made one at a time on a fresh snapshot, and their GPUs are assumed before
            # the lock is released; creating and binding then runs alongside other deployments.
            with self._place_lock:
                snap = self.live.snapshot()
                fixed, extra_used = self._fixed(infd, snap, sorted_pods, old)
                started = time.perf_counter()
                plan = solver.solve(_without(snap, extra_used), req, fixed=dict(fixed.items()))
                self.metrics.latency.observe(time.perf_counter() - started)
                if plan.feasible:
                    self._assume(infd, plan.assignments, sorted_pods)
            if not plan.feasible:
                reasons = list(plan.reasons)
                self.unschedulable.add(key)
                self._event(
                    body, "Unschedulable", "; ".join(r.message() for r in reasons), warning=True
                )
                outcome = Outcome(retry=True)
            else:
                self.unschedulable.discard(key)
                # 4. create and bind
                created, retry = self._apply(
                    key, infd, uid, req, plan.assignments, fixed, sorted_pods, body
                )
                if retry:
                    outcome = Outcome(retry=True)
                elif created:
                    tiers = (
                        ", ".join(f"{n} {t}" for t, n in plan.tiers.items()) or "no traffic pairs"
                    )
                    self._event(
                        body,
                        "Placed",
                        f"placed {created} pods ({tiers}); domains: {'; '.join(plan.domains)}"[
                            :1000
                        ],
                        warning=False,
                    )
                for component, value in (
                    ("intra", plan.cost.intra),
                    ("traffic", plan.cost.traffic),
                ):
                    self.metrics.cost.labels(
                        infd.metadata.namespace, infd.metadata.name, component
                    ).set(value)
        else:
            self.unschedulable.discard(key)
        self.metrics.unschedulable.set(len(self.unschedulable))
        # 5. services, status
        for role in infd.spec.roles:
            if (uid, role.name) not in self._services:
                self.kube.ensure_service(
                    infd.metadata.namespace, render.render_service(infd, uid, role)
                )
                self._services.add((uid, role.name))
        left = self.expectations.waiting(key, self._observed)
        if left > 0:
            # This visit bound pods the cache does not show yet: a status computed now would
            # report them unbound. The visit their watch events bring writes it, one patch
            # instead of two.
            return Outcome(retry=outcome.retry, after=outcome.after or left)
        pending = "waiting for old pods to terminate" if sorted_pods.terminating else ""
        new_status = status.compute(
            infd,
            generation,
            self.live.pods_of(key),
            snap.index,
            req,
            old=old,
            reasons=reasons,
            pending=pending,
        )
        self._write_status(key, body, new_status)
        self._count_tiers(key, new_status)
        return outcome

    def _observed(self, pod_key: str, uid: str) -> bool:
        """The cache shows the pod bound, being deleted, or replaced by another of its name."""
        pod = self.live.pod(pod_key)
        return pod is not None and (pod.uid != uid or pod.node is not None or pod.deleting)

    # -- step 2 ----------------------------------------------------------------------------

    def _sort(
        self,
        infd: models.InferenceDeployment,
        uid: str,
        pods: list[PodRecord],
        old: Mapping[str, Any],
    ) -> _Sorted:
        roles = {r.name: r for r in infd.spec.roles}
        hashes = {r.name: render.template_hash(r) for r in infd.spec.roles}
        out = _Sorted({}, {}, set(), [], [])
        for p in pods:
            key = PodKey(
                str(p.role),
                p.replica if p.replica is not None else -1,
                p.pod if p.pod is not None else -1,
            )
            if p.deleting:
                out.terminating.add(p.key)
                continue
            if p.owner_uid != uid:
                out.delete.append((p, False, "left over from an earlier deployment of this name"))
                continue
            role = roles.get(str(p.role))
            if role is None or key.replica < 0 or not 0 <= key.pod < role.pods_per_replica:
                out.delete.append((p, False, "its role or pod index is no longer in the spec"))
                continue
            if not p.active:
                out.delete.append((p, False, f"pod failed ({p.failed_reason or p.phase})"))
                out.lost.append(
                    f"pod {p.name} failed ({p.failed_reason or p.phase}); placing it again"
                )
                continue
            if p.node and not self.live.node_exists(p.node):
                out.delete.append((p, True, f"node {p.node} is gone"))
                out.lost.append(f"node {p.node} is gone; re-placing its pods")
                continue
            if p.node and not self.live.node_usable(p.node):
                out.delete.append(
                    (p, True, f"node {p.node} is NotReady, cordoned or no longer a GPU node")
                )
                out.lost.append(f"node {p.node} is unavailable; re-placing its pods")
                continue
            if p.node is None:
                out.unbound[key] = p
            else:
                out.healthy[key] = p
        # A node where more GPUs are bound than it has (a bind raced with another scheduler):
        # move our newest pods off it and re-plan them.
        crowded: dict[str, int] = {}
        for k, p in sorted(out.healthy.items(), key=lambda kp: kp[1].name, reverse=True):
            over = crowded.setdefault(str(p.node), self.live.overcommitted(p.node))
            if over > 0:
                del out.healthy[k]
                crowded[str(p.node)] = over - p.gpus
                out.delete.append((p, True, f"node {p.node} has more GPUs bound than it owns"))
                out.lost.append(
                    f"node {p.node} was overcommitted by a concurrent bind; re-planning"
                )
        self._scale_down(infd, out)
        self._roll(infd, hashes, out)
        return out

    def _scale_down(self, infd: models.InferenceDeployment, out: _Sorted) -> None:
        """Remove surplus replicas, keeping the ones whose loss would cost most."""
        snap = self.live.snapshot()
        for role in infd.spec.roles:
            present = sorted(
                {k.replica for k in [*out.healthy, *out.unbound] if k.role == role.name}
            )
            surplus = len(present) - role.replicas
            if surplus <= 0:
                continue
            sets = {}
            for rid in present:
                parts = [
                    (snap.index.row_of[p.node], p.exact or ())
                    for k, p in out.healthy.items()
                    if k.role == role.name and k.replica == rid and p.node in snap.index.row_of
                ]
                sets[rid] = objective.gpu_set(parts)
            # The cheapest to lose first: incomplete replicas, then the most spread out.
            ranked = sorted(
                present,
                key=lambda rid: (
                    len(sets[rid]) > 0,
                    -objective.intra_cost(snap.index, sets[rid]) if sets[rid] else 0,
                    -rid,
                ),
            )
            for rid in ranked[:surplus]:
                for group in (out.healthy, out.unbound):
                    for k in [k for k in group if k.role == role.name and k.replica == rid]:
                        out.delete.append(
                            (group.pop(k), False, f"scaled {role.name} down to {role.replicas}")
                        )

    def _roll(
        self, infd: models.InferenceDeployment, hashes: Mapping[str, str], out: _Sorted
    ) -> None:
        """Template changed: replace one stale replica at a time, only while all others run."""
        replicas: dict[tuple[str, int], list[PodRecord]] = defaultdict(list)
        for k, p in out.healthy.items():
            replicas[(k.role, k.replica)].append(p)
        # Only while every replica of every role is complete and ready (maxUnavailable = 1).
        complete = all(
            sum(
                1
                for (role, _), members in replicas.items()
                if role == r.name
                and len(members) == r.pods_per_replica
                and all(p.ready for p in members)
            )
            == r.replicas
            for r in infd.spec.roles
        )
        stale = sorted(
            key
            for key, members in replicas.items()
            if any(p.template_hash != hashes[key[0]] for p in members)
        )
        if not stale or out.terminating or out.unbound or not complete:
            return
        role, rid = stale[0]
        for k in [k for k in out.healthy if (k.role, k.replica) == (role, rid)]:
            out.delete.append(
                (out.healthy.pop(k), False, f"template of {role} changed; replacing replica {rid}")
            )

    # -- step 3 ----------------------------------------------------------------------------

    def _fixed(
        self,
        infd: models.InferenceDeployment,
        snap: snapshot.ClusterSnapshot,
        out: _Sorted,
        old: Mapping[str, Any],
    ) -> tuple[dict[PodKey, tuple[int, tuple[int, ...]]], dict[int, int]]:
        """Pods that stay, and GPUs to treat as used on top of the snapshot (row -> mask)."""
        row_of = snap.index.row_of
        fixed: dict[PodKey, tuple[int, tuple[int, ...]]] = {}
        extra: dict[int, int] = defaultdict(int)
        for k, p in out.healthy.items():
            if p.node in row_of and p.exact:
                fixed[k] = (row_of[str(p.node)], p.exact)
        # Created but never bound (a crash, or a failed bind, between create and bind): keep if
        # its GPUs are free. GPUs this process assumed for the pod itself count as free for it.
        for k, p in list(out.unbound.items()):
            row = row_of.get(str(p.planned_node))
            own = mask_of(self.live.assumed_gpus(p.key, p.planned_node))
            if (
                row is not None
                and p.exact
                and self.live.node_usable(p.planned_node)
                and ((int(snap.free[row]) | own) & ~extra[row]) & mask_of(p.exact)
                == mask_of(p.exact)
            ):
                fixed[k] = (row, p.exact)
                extra[row] |= mask_of(p.exact)
            else:
                out.unbound.pop(k)
                out.delete.append((p, False, "created but never bound, and its GPUs are taken"))
                self.kube.delete_pod(p.namespace, p.name, uid=p.uid)
        # Replicas being replaced keep their previous GPUs where still free (sticky placement).
        roles = {r.name: r for r in infd.spec.roles}
        for replica in old.get("replicas") or []:
            role = roles.get(str(replica.get("role")))
            rid = replica.get("replica")
            if role is None or not isinstance(rid, int) or rid >= role.replicas:
                continue
            keys = [PodKey(role.name, rid, int(p)) for p in range(role.pods_per_replica)]
            if any(k in fixed or k in out.unbound or k in out.healthy for k in keys):
                continue
            pods = replica.get("pods") or []
            if len(pods) != role.pods_per_replica:
                continue
            candidate: dict[PodKey, tuple[int, tuple[int, ...]]] = {}
            for i, pod in enumerate(pods):  # status lists them by pod index
                row = row_of.get(str(pod.get("node")))
                gpus = tuple(int(g) for g in pod.get("gpus") or [])
                if row is None or len(gpus) != role.pod_gpus or not snap.schedulable[row]:
                    break
                if (int(snap.free[row]) & ~extra[row]) & mask_of(gpus) != mask_of(gpus):
                    break
                candidate[keys[i]] = (row, gpus)
            else:
                for k, (row, gpus) in candidate.items():
                    fixed[k] = (row, gpus)
                    extra[row] |= mask_of(gpus)
        return fixed, dict(extra)

    # -- step 4 ----------------------------------------------------------------------------

    def _apply(
        self,
        key: str,
        infd: models.InferenceDeployment,
        uid: str,
        req: request.Request,
        assignments: tuple[Assignment, ...],
        fixed: Mapping[PodKey, tuple[int, tuple[int, ...]]],
        out: _Sorted,
        body: Mapping[str, Any],
    ) -> tuple[int, bool]:
        roles = {r.name: r for r in infd.spec.roles}
        replica_sets: dict[tuple[str, int], list[Assignment]] = defaultdict(list)
        for a in assignments:
            replica_sets[(a.key.role, a.key.replica)].append(a)
        widest = {
            key: objective.widest_tier(
                self.live.snapshot().index, objective.gpu_set((a.row, a.gpus) for a in members)
            )
            for key, members in replica_sets.items()
        }
        tiers = self.live.snapshot().index.tiers
        peers: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
        for a_key, b_key, _ in objective.traffic_pairs(req, {k: {} for k in replica_sets}):
            peers[a_key].append(b_key)
            peers[b_key].append(a_key)
        jobs: list[tuple[Assignment, dict[str, Any] | None, PodRecord | None]] = []
        for a in assignments:
            existing = out.healthy.get(a.key)
            if existing is not None:
                continue
            if a.key in out.unbound:
                jobs.append((a, None, out.unbound[a.key]))
                continue
            role = roles[a.key.role]
            if _busy(infd, a.key, out):
                continue  # the old pod of that name is still going away; next visit
            replica = (a.key.role, a.key.replica)
            members = sorted(replica_sets[replica], key=lambda m: m.key.pod)
            names = [render.dns_name(infd, role.name, m.key.replica, m.key.pod) for m in members]
            manifest_ = render.render_pod(
                infd, uid, role, a.key.replica, a.key.pod,
                node=a.node, gpus=a.gpus, tier=tiers[widest[replica]],
                scheduler_name=self.scheduler_name,
                replica_pods=names,
                peers=[render.dns_name(infd, r, rid, 0) for r, rid in peers.get(replica, [])],
            )  # fmt: skip
            jobs.append((a, manifest_, None))
        results = list(self._pool.map(lambda job: self._create_and_bind(infd, *job), jobs))
        conflicts = [r for r in results if r.code == BindCode.CONFLICT]
        if conflicts:
            # Gang: undo this round's new pods; the next plan sees the cluster as it is now.
            ns = infd.metadata.namespace
            for (a, rendered, _), result in zip(jobs, results, strict=True):
                if rendered is not None and result.created:
                    self.kube.delete_pod(ns, rendered["metadata"]["name"], force=True)
                name = render.pod_name(infd.metadata.name, a.key.role, a.key.replica, a.key.pod)
                self.live.forget(f"{ns}/{name}")
            self._event(
                body,
                "BindConflict",
                "; ".join(sorted({r.message for r in conflicts}))[:1000] + "; re-planning",
                warning=True,
            )
            return 0, True
        # A transient failure (5xx, 429, no answer) backs off and comes back; the pods already
        # created are kept and bound then.
        bound = [r for r in results if r.code == BindCode.BOUND]
        self.expectations.expect(key, {r.key: r.uid for r in bound if r.uid})
        failed = any(r.code == BindCode.ERROR for r in results)
        return sum(1 for r in bound if r.created), failed

    def _assume(
        self, infd: models.InferenceDeployment, assignments: tuple[Assignment, ...], out: _Sorted
    ) -> None:
        """Take the plan's new GPUs in the live view before anyone else plans."""
        ns = infd.metadata.namespace
        for a in assignments:
            if a.key in out.healthy or _busy(infd, a.key, out):
                continue
            cpu, mem = snapshot.resource_request(infd.spec.role(a.key.role).template.spec)
            name = render.pod_name(infd.metadata.name, a.key.role, a.key.replica, a.key.pod)
            self.live.assume(f"{ns}/{name}", a.node, a.gpus, cpu, mem)

    def _create_and_bind(
        self,
        infd: models.InferenceDeployment,
        a: Assignment,
        pod: dict[str, Any] | None,
        unbound: PodRecord | None,
    ) -> _Attempt:
        ns = infd.metadata.namespace
        name = pod["metadata"]["name"] if pod is not None else unbound.name  # type: ignore[union-attr]
        key = f"{ns}/{name}"
        uid = unbound.uid if unbound is not None else None
        created = False
        if pod is not None:
            faults.point("before-create")
            try:
                created_body = self.kube.create_pod(ns, pod)
                uid = str(created_body["metadata"]["uid"])
                created = True
            except KubeError as exc:
                self.live.forget(key)
                if exc.conflict:
                    return _Attempt(key, None, False, BindCode.ERROR, f"{name} still exists")
                raise
        faults.point("after-create")
        result = self.binder.bind(PodRef(ns, name, uid), a.node, a.gpus)
        faults.point("after-bind")
        self.metrics.binds.labels(result=result.code.value).inc()
        if result.code == BindCode.CONFLICT:
            self.live.forget(key)
            if not created:
                self.kube.delete_pod(ns, name, force=True)
        return _Attempt(key, uid, created, result.code, result.message)

    # -- step 5 ----------------------------------------------------------------------------

    def _write_status(self, key: str, body: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old = body.get("status") or {}
        if status.same(old, new):
            return
        meta = body["metadata"]
        faults.point("before-status")
        self.kube.patch_status(meta["namespace"], meta["name"], status.merge_patch(old, new))
        cached = self.deployments.get(key)
        if cached is not None and cached is body:
            self.deployments[key] = {**body, "status": dict(new)}

    def _event(self, body: Mapping[str, Any], reason: str, message: str, *, warning: bool) -> None:
        uid = str((body.get("metadata") or {}).get("uid"))
        now = time.monotonic()
        seen = (uid, reason, message)
        if now - self._events.get(seen, -1e9) < EVENT_REPEAT_SECONDS:
            return
        self._events[seen] = now
        try:
            self.kube.event(
                body, reason=reason, message=message, warning=warning, component=COMPONENT
            )
        except KubeError as exc:
            log.warning("could not post event %s: %s", reason, exc)

    def _count_tiers(self, key: str, new: Mapping[str, Any]) -> None:
        counts: Counter[str] = Counter()
        for replica in new.get("replicas") or []:
            counts[str(replica.get("tier"))] += len(replica.get("pods") or [])
        self._tier_pods[key] = counts
        self._publish_tiers()

    def _publish_tiers(self) -> None:
        total: Counter[str] = Counter()
        for counts in self._tier_pods.values():
            total.update(counts)
        self.metrics.pods_per_tier.clear()
        for tier, n in total.items():
            self.metrics.pods_per_tier.labels(tier=tier).set(n)

    def _forget(self, key: str) -> None:
        self.expectations.forget(key)
        self.unschedulable.discard(key)
        self._tier_pods.pop(key, None)
        self._publish_tiers()
        self.metrics.unschedulable.set(len(self.unschedulable))
        namespace, _, name = key.partition("/")
        for component in ("intra", "traffic"):
            with contextlib.suppress(KeyError):
                self.metrics.cost.remove(namespace, name, component)

    def publish_cluster_metrics(self) -> None:
        """Free GPUs per NVLink domain, stranded GPUs, node label issues (periodic)."""
        snap = self.live.snapshot()
        index = snap.index
        counts = snap.free_counts
        self.metrics.free_gpus.clear()
        for clique in range(len(index.clique_names)):
            rows = np.flatnonzero(index.clique_of == clique)
            self.metrics.free_gpus.labels(nvlink_domain=index.clique_names[clique]).set(
                int(counts[rows].sum())
            )
        outside = np.flatnonzero(index.clique_of < 0)
        self.metrics.free_gpus.labels(nvlink_domain="none").set(
            int(counts[outside].sum()) if outside.size else 0
        )
        smallest = min(
            (
                r.gpus_per_pod or r.gpus_per_replica
                for body in self.deployments.values()
                for r in _roles(body)
            ),
            default=1,
        )
        self.metrics.stranded.set(int(counts[(counts > 0) & (counts < smallest)].sum()))
        issues: Counter[tuple[str, str]] = Counter()
        for issue in self.live.issues():
            if issue.severity == "warning":
                issues[(issue.field, str(issue.excluded).lower())] += 1
        self.metrics.node_issues.clear()
        for (field, excluded), n in issues.items():
            self.metrics.node_issues.labels(field=field, excluded=excluded).set(n)


def _missing_pods(infd: models.InferenceDeployment, existing: set[PodKey]) -> bool:
    """Whether some desired pod does not exist yet. Counted, not enumerated: the schema allows
    1024 replicas of 4096 one-GPU pods per role, and a set of 4 million keys took seconds of
    every visit (found by chaos/test_fuzz.py)."""
    roles = {r.name: r for r in infd.spec.roles}
    present = 0
    for key in existing:
        role = roles.get(key.role)
        if (
            role is not None
            and 0 <= key.replica < role.replicas
            and 0 <= key.pod < role.pods_per_replica
        ):
            present += 1
    return present < sum(r.replicas * r.pods_per_replica for r in infd.spec.roles)


def _busy(infd: models.InferenceDeployment, key: PodKey, out: _Sorted) -> bool:
    """The pod's name still belongs to a pod being deleted."""
    name = render.pod_name(infd.metadata.name, key.role, key.replica, key.pod)
    return f"{infd.metadata.namespace}/{name}" in out.terminating


def _roles(body: Mapping[str, Any]) -> list[models.Role]:
    try:
        return list(manifest.parse_deployment(body).spec.roles)
    except SpecError:
        return []


def _without(snap: snapshot.ClusterSnapshot, used: Mapping[int, int]) -> snapshot.ClusterSnapshot:
    """The snapshot with some more GPUs marked used (pods kept at GPUs the snapshot still shows
    free: unbound pods and sticky placements)."""
    if not used:
        return snap
    free = snap.free.copy()
    counts = snap.free_counts.copy()
    for row, mask in used.items():
        free[row] = np.uint64(int(free[row]) & ~mask)
        counts[row] = int(free[row]).bit_count()
    return dataclasses.replace(snap, free=free, free_counts=counts)
