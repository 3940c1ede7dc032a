"""Reconcile one InferenceDeployment: carry out what placement decides, then report.

Level-based and idempotent: every visit reads the current state (the deployment, its pods, the
cluster snapshot) and acts only on differences, so a second visit of the same generation writes
nothing. All state lives in the API: pods carry their role/replica/pod labels and GPU annotation,
the status carries the last placement; a restarted operator picks up from there.

The decisions are pure functions of ``shorthop.placement``; this module only orders the API
calls around them and writes status, events and metrics. One visit, in order:

1. validate: ``manifest`` parses the body, ``placement.request`` resolves it (an unknown tier or a
   scheduling rule the API server would refuse is a ``SpecError``), ``render`` checks the
   templates -> ``Invalid`` + event, stop; scheduling fields shorthop does not apply
   (``placement.ignored``) get one Warning event per generation; pods a kubelet rejected at
   admission exclude their node for their role (``placement.admission``), recorded in the status
   before anything else happens, with a Warning event;
2. ``placement.triage.decide``: which pods stay, which go and why (lost, surplus, stale, strays,
   GPUs another claim holds too); delete those (force for pods on vanished or unusable nodes);
   on DRA nodes, allocate again the ResourceClaim of a kept pod whose claim is missing;
3. under the planning lock, on a fresh snapshot: ``triage.anchor`` (what stays fixed: kept pods,
   unbound pods whose GPUs are still free, sticky GPUs of replicas being replaced), then
   ``placement.solver.solve``; the new pods' GPUs are *assumed* before the lock is released so
   no other plan takes them;
4. create and bind the new pods in parallel (``binder``; on DRA nodes the pod references its
   ResourceClaim, which ``controller.dra`` allocates before the bind); just before each bind the
   node as stored now is checked against the role's rules again (labels may have changed since
   the plan); a node that fails them, or a rejected bind, deletes the round's new pods (gang) and
   re-plans later with backoff;
5. ensure one headless Service per role; write the status if it changed; emit events and metrics.

After binding, the deployment's visits wait until the watch shows those binds
(:mod:`~shorthop.controller.runtime.expectations`), so a visit never plans or binds the same pods
twice and the status is written once, from the bound pods.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from shorthop import manifest
from shorthop.api import models
from shorthop.controller import dra, gauges, messages, render, rules, score, status
from shorthop.controller.binder import BindCode, Binder, PodRef
from shorthop.controller.faults import Faults
from shorthop.controller.kube import Kube
from shorthop.controller.live import LiveCluster
from shorthop.controller.runtime.expectations import Expectations
from shorthop.errors import Conflict, KubeError, MissingObject, SpecError
from shorthop.metrics import Metrics
from shorthop.placement import admission, filters, nearby, request, solver, triage
from shorthop.placement.admission import Exclusion
from shorthop.placement.plan import Assignment, Plan, Reason
from shorthop.placement.request import RoleRequest
from shorthop.placement.snapshot import ClusterSnapshot
from shorthop.placement.triage import PodState

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


class Reconciler:
    """Carries out one deployment's visit; safe to call from several worker threads (never
    for the same key at once: the work queue sees to that)."""

    def __init__(
        self,
        kube: Kube,
        live: LiveCluster,
        binder: Binder,
        metrics: Metrics,
        *,
        scheduler_name: str = "shorthop",
        service_port: int = render.SERVICE_PORT,
        workers: int = 64,
        faults: Faults | None = None,
        claims: dra.ClaimBinder | None = None,
    ) -> None:
        self.kube = kube
        self.live = live
        self.binder = binder
        self.claims = claims  # repairs the ResourceClaims of bound pods on DRA nodes
        self.metrics = metrics
        self.scheduler_name = scheduler_name
        self.service_port = service_port
        self.faults = faults or Faults()
        self.deployments: dict[str, Mapping[str, Any]] = {}  # latest bodies, fed by kopf
        self.unschedulable: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shorthop-api")
        self._place_lock = threading.Lock()
        self._events: dict[tuple[str, str, str], float] = {}
        self._services: set[tuple[str, str]] = set()
        self._warned: dict[str, tuple[str, Any]] = {}  # key -> (uid, generation) warned about
        self.gauges = gauges.Gauges(metrics)
        self.evaluations = status.Evaluations()
        self.expectations = Expectations(on_expire=live.forget)
        self.scores = score.Scores()
        self.away: dict[str, str] = {}  # key -> status.placedAway of its last placement

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
            req = request.from_spec(
                infd.spec,
                snap.index.tiers,
                name=infd.metadata.name,
                runtime_classes=rules.runtime_classes(self.kube, infd),
            )
            for i, (role, shape) in enumerate(zip(infd.spec.roles, req.roles, strict=True)):
                render.check_template(role, i, shape)
                dra.check_template(role, i)
        except SpecError as exc:
            self.metrics.errors.labels(reason="invalid-spec").inc()
            if old.get("message") != str(exc):
                log.info("%s is invalid: %s", key, exc)
            self._write_status(key, body, status.invalid(generation, str(exc), old))
            # An object the spec names may be made later (a RuntimeClass): come back, backing
            # off, without a new event for the same message each time.
            missing = isinstance(exc, MissingObject)
            if not (missing and old.get("message") == str(exc)):
                self._event(body, "InvalidSpec", str(exc), warning=True)
            return Outcome(retry=missing)
        self._warn_ignored(key, body, infd, req)
        hashes = {r.name: render.template_hash(r) for r in infd.spec.roles}
        excluded = self._exclude_rejected(key, body, uid, hashes, snap)
        req = request.with_exclusions(req, admission.by_role(excluded))
        # 2. sort the pods and delete what must go
        decision = triage.decide(req, hashes, uid, self.live.pods_of(key), snap)
        # Paired peers told to the pods that stay keep their pairs (new replicas pair anew).
        req = request.with_pairs(req, triage.told_peers(decision))
        namespace = infd.metadata.namespace
        for removal in decision.removals:
            pod = removal.pod
            self.kube.delete_pod(namespace, pod.name, force=removal.force, uid=pod.uid)
            self.faults.point("after-delete")
            # Its name is busy until the deletion is seen; its replacement comes next visit.
            log.info("deleted %s/%s: %s", namespace, pod.name, removal.why)
        if decision.repairs:
            self._event(body, "Repairing", "; ".join(sorted(set(decision.repairs))), warning=True)
        self._repair_claims(body, namespace, decision, snap.unclaimed)
        if decision.scaled_away:
            message = messages.scaled_down(infd, decision)
            log.info("%s: %s", key, message)
            self._event(body, "ScaledDown", message, warning=False)
            self.away[key] = ""  # the replicas placed away may be gone; a new plan says again
        # 3. plan what is missing
        reasons: list[Reason] = []
        outcome = Outcome(after=1.0 if decision.terminating else None)
        if triage.missing_pods(req, decision.present()) or decision.unbound:
            # Plans are made one at a time on a fresh snapshot, and their GPUs are assumed before
            # the lock is released; creating and binding then runs alongside other deployments.
            with self._place_lock:
                refresh = time.perf_counter()
                snap = self.live.snapshot()
                self.metrics.snapshot.observe(time.perf_counter() - refresh)
                anchors = triage.anchor(
                    decision,
                    req,
                    snap,
                    status.placed_replicas(old),
                    {
                        p.name: self.live.assumed_gpus(f"{namespace}/{p.name}", p.planned_node)
                        for p in decision.unbound.values()
                    },
                    {
                        r.name: f
                        for r, f in zip(req.roles, filters.role_filters(snap, req), strict=True)
                    },
                )
                for removal in anchors.dropped:
                    self.kube.delete_pod(namespace, removal.pod.name, uid=removal.pod.uid)
                    log.info("deleted %s/%s: %s", namespace, removal.pod.name, removal.why)
                if anchors.sticky:
                    log.info(
                        "%s: pods back on their previous GPUs: %s", key, sorted(anchors.sticky)
                    )
                started = time.perf_counter()
                planned_on = snap.with_taken(anchors.taken)
                plan = solver.solve(planned_on, req, fixed=dict(anchors.fixed))
                solved = time.perf_counter()
                self.scores.placing()
                self.metrics.latency.observe(solved - started)
                if plan.feasible:
                    self._assume(infd, req, plan.assignments, decision)
                    if not decision.present():  # a fresh plan: the score needs no second solve
                        self.scores.planned(key, snap, plan.cost.intra + plan.cost.traffic)
                    else:  # a repair or a scale: the score is recomputed once it settles
                        self.scores.forget(key)
            if not plan.feasible:
                reasons = list(plan.reasons)
                if key not in self.unschedulable:
                    log.info(
                        "%s is unschedulable: %s", key, "; ".join(r.message() for r in reasons)
                    )
                self.unschedulable.add(key)
                self._event(
                    body, "Unschedulable", "; ".join(r.message() for r in reasons), warning=True
                )
                outcome = Outcome(retry=True)
            else:
                self.unschedulable.discard(key)
                # 4. create and bind
                created, retry = self._apply(key, body, infd, uid, req, plan, decision, anchors)
                if retry:
                    outcome = Outcome(retry=True)
                elif created:
                    self._event(body, "Placed", messages.placed(created, plan), warning=False)
                    far = nearby.away(planned_on, req, plan.assignments, anchors.fixed)
                    self.away[key] = far.message() if far is not None else ""
                    if far is not None:
                        log.info("%s: %s", key, far.message())
                        self._event(body, "PlacedAway", far.message(), warning=True)
                    log.info(
                        "%s: %s",
                        key,
                        messages.placed_log(
                            created, plan, time.perf_counter() - started, solved - started
                        ),
                    )
                for component, value in (
                    ("intra", plan.cost.intra),
                    ("traffic", plan.cost.traffic),
                ):
                    self.metrics.cost.labels(namespace, infd.metadata.name, component).set(value)
        else:
            self.unschedulable.discard(key)
        self.metrics.unschedulable.set(len(self.unschedulable))
        # 5. services, status
        for role in infd.spec.roles:
            if (uid, role.name) not in self._services:
                service = render.render_service(infd, uid, role, self.service_port)
                self.kube.ensure_service(namespace, service)
                self._services.add((uid, role.name))
        left = self.expectations.waiting(key, self._observed)
        if left > 0:
            # This visit bound pods the cache does not show yet: a status computed now would
            # report them unbound. The visit their watch events bring writes it, one patch
            # instead of two.
            return Outcome(retry=outcome.retry, after=outcome.after or left)
        pending = "waiting for old pods to terminate" if decision.terminating else ""
        new_status = status.compute(
            infd,
            generation,
            self.live.pods_of(key),
            snap.index,
            req,
            old=old,
            reasons=reasons,
            pending=pending,
            excluded=excluded,
            placed_away=self.away.pop(key, None),
            evaluations=self.evaluations,
        )
        again = self._score(
            key, req, new_status, old, idle=not reasons and not decision.terminating
        )
        self._write_status(key, body, new_status)
        self.gauges.count_tiers(key, new_status)
        if again is not None and (outcome.after is None or again < outcome.after):
            return Outcome(retry=outcome.retry, after=again)
        return outcome

    def _score(
        self,
        key: str,
        req: request.Request,
        new: dict[str, Any],
        old: Mapping[str, Any],
        *,
        idle: bool,
    ) -> float | None:
        """``status.placementScore``; seconds to come back after, or None (see
        :func:`score.status_entry`)."""
        own = score.own_pods(self.live.pods_of(key))
        snap = self.live.snapshot()
        return score.status_entry(
            self.scores, self.metrics, snap, key, req, own, new, old, idle=idle
        )

    def _observed(self, pod_key: str, uid: str) -> bool:
        """The cache shows the pod bound, being deleted, or replaced by another of its name."""
        pod = self.live.pod(pod_key)
        return pod is not None and (pod.uid != uid or pod.node is not None or pod.deleting)

    # -- step 4 ----------------------------------------------------------------------------

    def _apply(
        self,
        key: str,
        body: Mapping[str, Any],
        infd: models.InferenceDeployment,
        uid: str,
        req: request.Request,
        plan: Plan,
        decision: triage.Decision,
        anchors: triage.Anchors,
    ) -> tuple[int, bool]:
        """Create and bind the plan's new pods (and bind the unbound ones kept) in parallel;
        returns the pods created and whether to retry."""
        name = infd.metadata.name
        new = [
            a.key
            for a in plan.assignments
            # A pod of the same name still going away: its replacement comes next visit.
            if a.key not in decision.keep
            and a.key not in anchors.bind
            and not decision.busy(name, a.key)
        ]
        pods = render.render_plan_pods(
            infd, uid, req, plan, new, scheduler_name=self.scheduler_name
        )
        for a in plan.assignments:
            found = self.live.node_devices(a.node) if a.key in pods else None
            if found is not None:
                # A DRA node: the pod takes its GPUs through a ResourceClaim (controller.dra).
                pods[a.key] = dra.attach_claim(pods[a.key], found.devices_of(a.gpus))
        jobs: list[tuple[Assignment, dict[str, Any] | None, PodState | None]] = [
            (a, pods.get(a.key), anchors.bind.get(a.key))
            for a in plan.assignments
            if a.key in pods or a.key in anchors.bind
        ]
        roles = {r.name: r for r in req.roles}
        nodes = rules.FreshNodes(self.kube)
        futures = [
            self._pool.submit(
                self._create_and_bind, infd, a, rendered, unbound, roles[a.key.role], nodes
            )
            for a, rendered, unbound in jobs
        ]
        # Every job runs to its end before an error is raised: each releases the GPUs assumed
        # for a pod it could not create. (``pool.map`` cancelled the jobs not yet started at the
        # first error, and their GPUs stayed assumed for ASSUME_SECONDS: a deployment found no
        # room for two minutes after an etcd restart, chaos/test_apiserver.py.)
        wait(futures)
        results = [f.result() for f in futures]
        conflicts = [r for r in results if r.code == BindCode.CONFLICT]
        if conflicts:
            # Gang: undo this round's new pods; the next plan sees the cluster as it is now.
            ns = infd.metadata.namespace
            for (a, rendered, _), result in zip(jobs, results, strict=True):
                if rendered is not None and result.created:
                    self.kube.delete_pod(ns, rendered["metadata"]["name"], force=True)
                self.live.forget(f"{ns}/{a.key.name(name)}")
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
        failed = [r for r in results if r.code == BindCode.ERROR]
        for r in failed:
            log.warning("binding %s: %s", r.key, r.message)
        return sum(1 for r in bound if r.created), bool(failed)

    def _assume(
        self,
        infd: models.InferenceDeployment,
        req: request.Request,
        assignments: tuple[Assignment, ...],
        decision: triage.Decision,
    ) -> None:
        """Take the plan's new GPUs in the live view before anyone else plans."""
        ns, name = infd.metadata.namespace, infd.metadata.name
        shapes = {r.name: r for r in req.roles}
        for a in assignments:
            if a.key in decision.keep or decision.busy(name, a.key):
                continue
            shape = shapes[a.key.role]
            self.live.assume(
                f"{ns}/{a.key.name(name)}",
                a.node,
                a.gpus,
                shape.cpu_millis,
                shape.memory_bytes,
                host_ports=shape.constraints.host_ports,
                other=shape.other,
            )

    def _create_and_bind(
        self,
        infd: models.InferenceDeployment,
        a: Assignment,
        pod: dict[str, Any] | None,
        unbound: PodState | None,
        role: RoleRequest,
        nodes: rules.FreshNodes,
    ) -> _Attempt:
        ns = infd.metadata.namespace
        name = pod["metadata"]["name"] if pod is not None else unbound.name  # type: ignore[union-attr]
        key = f"{ns}/{name}"
        uid = unbound.uid if unbound is not None else None
        claims = (
            [c["resourceClaimName"] for c in pod["spec"].get("resourceClaims") or []]
            if pod is not None
            else list(unbound.claims if unbound is not None else ())
        )
        created = False
        if pod is not None:
            self.faults.point("before-create")
            try:
                created_body = self.kube.create_pod(ns, pod)
                uid = str(created_body["metadata"]["uid"])
                created = True
            except KubeError as exc:
                self.live.forget(key)
                if isinstance(exc, Conflict):
                    return _Attempt(key, None, False, BindCode.ERROR, f"{name} still exists")
                raise
        self.faults.point("after-create")
        claim = dra.claim_name(name) if dra.claim_name(name) in claims else None
        result = rules.recheck(role, a.node, nodes) or self.binder.bind(
            PodRef(ns, name, uid, claim), a.node, a.gpus
        )
        self.faults.point("after-bind")
        self.metrics.binds.labels(result=result.code.value).inc()
        if result.code == BindCode.CONFLICT:
            self.live.forget(key)
            if not created:
                self.kube.delete_pod(ns, name, force=True)
        return _Attempt(key, uid, created, result.code, result.message)

    def _repair_claims(
        self,
        body: Mapping[str, Any],
        namespace: str,
        decision: triage.Decision,
        unclaimed: frozenset[str],
    ) -> None:
        """Bound pods on DRA nodes whose ResourceClaim is missing or not allocated get it
        allocated again to their GPUs (idempotent: a claim the cache has not shown yet is found
        allocated); a pod whose GPUs are taken meanwhile is deleted and placed again."""
        if self.claims is None or not unclaimed:
            return
        for p in decision.keep.values():
            if f"{namespace}/{p.name}" not in unclaimed or not p.node or not p.exact:
                continue
            claim = dra.claim_name(p.name) if dra.claim_name(p.name) in p.claims else None
            if claim is None:
                continue
            result = self.claims.ensure(PodRef(namespace, p.name, p.uid, claim), p.node, p.exact)
            if result.code == BindCode.CONFLICT:
                self.kube.delete_pod(namespace, p.name, force=True, uid=p.uid)
                self._event(body, "Repairing", f"pod {p.name}: {result.message}", warning=True)
            elif result.code == BindCode.ERROR:
                log.warning("repairing the claim of %s/%s: %s", namespace, p.name, result.message)

    # -- step 1: what the templates' scheduling rules leave out -------------------------------

    def _warn_ignored(
        self,
        key: str,
        body: Mapping[str, Any],
        infd: models.InferenceDeployment,
        req: request.Request,
    ) -> None:
        """One Warning event per generation naming the scheduling fields not applied."""
        meta = body["metadata"]
        seen = (str(meta.get("uid")), meta.get("generation"))
        if self._warned.get(key) == seen:
            return
        self._warned[key] = seen
        found = rules.unapplied(infd, req, self.scheduler_name)
        if found:
            log.info("%s: scheduling fields not applied: %s", key, "; ".join(found))
            self._event(body, "IgnoredSchedulingFields", "; ".join(found), warning=True)

    def _exclude_rejected(
        self,
        key: str,
        body: Mapping[str, Any],
        uid: str,
        hashes: Mapping[str, str],
        snap: ClusterSnapshot,
    ) -> tuple[Exclusion, ...]:
        """Nodes left out per role after kubelet rejections (``rules.record_rejections``: in the
        status before the pods are replaced); a Warning event for each new one."""
        merged, events = rules.record_rejections(
            self.kube, body, self.live.pods_of(key), uid, hashes, snap.known
        )
        written = status.excluded_nodes(body.get("status") or {}) != merged
        cached = self.deployments.get(key)
        if written and cached is not None:
            excluded = status.exclusions_json(merged)
            self.deployments[key] = {
                **cached,
                "status": {**(cached.get("status") or {}), "excludedNodes": excluded},
            }
        for message in events:
            self._event(body, "AdmissionRejected", message, warning=True)
        return merged

    # -- step 5 ----------------------------------------------------------------------------

    def _write_status(self, key: str, body: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old = body.get("status") or {}
        if status.same(old, new):
            return
        meta = body["metadata"]
        self.faults.point("before-status")
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

    def _forget(self, key: str) -> None:
        self.expectations.forget(key)
        self._warned.pop(key, None)
        self.unschedulable.discard(key)
        self.gauges.forget(key)
        self.metrics.unschedulable.set(len(self.unschedulable))
        namespace, _, name = key.partition("/")
        for component in ("intra", "traffic", "achievable"):
            with contextlib.suppress(KeyError):
                self.metrics.cost.remove(namespace, name, component)
        self.scores.forget(key)
        self.away.pop(key, None)
        with contextlib.suppress(KeyError):
            self.metrics.score.remove(namespace, name)

    def publish_cluster_metrics(self) -> None:
        """Called after node and pod changes (debounced) and at every resync."""
        self.gauges.publish_cluster(self.live, list(self.deployments.values()))
