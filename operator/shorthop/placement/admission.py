"""Pods a kubelet rejected at admission, and the nodes that leaves out for their role (pure).

shorthop checks what the kubelet checks before it binds (``filters``), but a node can still
refuse a pod: its labels changed after the check, a device plugin could not hand out the GPUs,
a resource shorthop does not count ran out. The kubelet then fails the pod (phase ``Failed``)
with ``status.reason`` naming the predicate (``NodeAffinity``, ``NodeName``, ``NodePorts``,
``TaintToleration``, ``UnexpectedAdmissionError``, ...) or the resource (``OutOfcpu``,
``OutOfmemory``, ``OutOfpods``, ``OutOfnvidia.com/gpu``: ``OutOf`` and the resource's name).

Placed again as it was, the pod would land on the same node (the replica's previous GPUs are
sticky) and be rejected again, forever. So each rejection *excludes that node for that role*:
an :class:`Exclusion`, kept in the deployment's status (``status.excludedNodes``) so that a
restarted operator remembers it, and written before the failed pod is deleted. The pod is then
replaced once, elsewhere; every node is tried at most once per role. An exclusion lasts while
the role's template is the one the kubelet rejected (a new template may fix what it objected to)
and the node exists.

Callers: ``controller.reconcile`` (with ``controller.status``, which stores exclusions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from shorthop.placement.triage import PodState

# status.reason of a pod the kubelet's admission refused (pkg/kubelet/lifecycle/predicate.go and
# the topology manager), besides "OutOf<resource>".
PREDICATE_REASONS = frozenset(
    {
        "NodeAffinity",
        "NodeName",
        "NodePorts",
        "TaintToleration",
        "UnexpectedAdmissionError",
        "UnexpectedPredicateFailureType",
        "UnknownReason",
        "InvalidNodeInfo",
        "PodOSSelectorNodeLabelDoesNotMatch",
        "PodOSNotSupported",
        "InitContainerRestartPolicyForbidden",
        "SupplementalGroupsPolicyNotSupported",
        "TopologyAffinityError",
    }
)
RESOURCE_PREFIX = "OutOf"


def is_rejection(phase: str, reason: str | None) -> bool:
    """The pod failed because a kubelet refused to admit it.

    >>> is_rejection("Failed", "OutOfnvidia.com/gpu"), is_rejection("Failed", "Evicted")
    (True, False)
    """
    if phase != "Failed" or not reason:
        return False
    return reason in PREDICATE_REASONS or (
        reason.startswith(RESOURCE_PREFIX) and len(reason) > len(RESOURCE_PREFIX)
    )


@dataclass(frozen=True, slots=True, order=True)
class Exclusion:
    """Node ``node`` is left out for role ``role`` while its template hash is
    ``template_hash``: its kubelet rejected a pod of it (``reason``)."""

    role: str
    node: str
    reason: str
    template_hash: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected pod of the deployment, and the exclusion it asks for."""

    pod: str
    exclusion: Exclusion


def rejections(
    pods: Iterable[PodState], template_hashes: Mapping[str, str], owner_uid: str
) -> list[Rejection]:
    """The deployment's pods (of its current templates) that a kubelet rejected, in pod order."""
    found = []
    for p in pods:
        if p.owner_uid != owner_uid or not p.node or p.role is None or p.deleting:
            continue
        current = template_hashes.get(p.role)
        if current is None or p.template_hash != current:
            continue
        if is_rejection(p.phase, p.failed_reason):
            found.append(
                Rejection(p.name, Exclusion(p.role, p.node, str(p.failed_reason), current))
            )
    return found


def merge(
    old: Sequence[Exclusion],
    new: Iterable[Exclusion],
    template_hashes: Mapping[str, str],
    node_exists: Callable[[str], bool],
) -> tuple[Exclusion, ...]:
    """The exclusions to keep: the old ones and the new, one per (role, node) (the first reason
    seen stays), dropping those of a changed template or a node that is gone; sorted."""
    kept: dict[tuple[str, str], Exclusion] = {}
    for e in (*old, *new):
        if template_hashes.get(e.role) != e.template_hash or not node_exists(e.node):
            continue
        kept.setdefault((e.role, e.node), e)
    return tuple(sorted(kept.values()))


def by_role(exclusions: Iterable[Exclusion]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for e in exclusions:
        out.setdefault(e.role, set()).add(e.node)
    return {role: frozenset(nodes) for role, nodes in out.items()}
