"""Who holds each node's GPUs, at every state a :class:`tests.watching.PodWatch` sees: the check
behind "never overcommit a node" when shorthop and kube-scheduler bind onto the same nodes.

Two schedulers share the nodes and the API server arbitrates nothing between them (a
``pods/binding`` is accepted whatever the node already holds; a kubelet would refuse the second
pod at admission, kwok does not). Each scheduler knows its own binds before they are seen
(shorthop *assumes* the GPUs of a plan, kube-scheduler its cache), so a node overcommitted by
the pods of **one** scheduler is a bug in it, at any moment. Two binds by **different**
schedulers can land on the same GPUs within the moment each needs to see the other's: shorthop
then yields, deleting its newest pods on that node and placing them again. So, at every state:

* **violation**: a node with more GPUs requested by the active pods of one scheduler than it
  has; a GPU index in two active pods' ``shorthop.io/gpus`` annotations on one node, or past
  the node's GPU count;
* **episode** (recorded, allowed while it lasts): a node over its GPUs by pods of both; it must
  end by a pod of shorthop's leaving that node (:meth:`GpuLedger.unresolved` lists the
  episodes that did not end so).

Pods are raw JSON (as a watch or ``_preload_content=False`` returns them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GPU = "nvidia.com/gpu"
GPU_ANNOTATION = "shorthop.io/gpus"
SHORTHOP = "shorthop"
DEFAULT_SCHEDULER = "default-scheduler"


def active(pod: Mapping[str, Any]) -> bool:
    """Bound and not finished (it holds its GPUs; a terminating pod still does)."""
    return bool(pod.get("spec", {}).get("nodeName")) and pod.get("status", {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def gpu_request(pod: Mapping[str, Any]) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("limits") or {}).get(GPU) or (resources.get("requests") or {}).get(
            GPU
        )
        total += int(value or 0)
    return total


def gpu_indices(pod: Mapping[str, Any]) -> list[int] | None:
    raw = (pod.get("metadata", {}).get("annotations") or {}).get(GPU_ANNOTATION)
    if raw is None:
        return None
    return [int(g) for g in str(raw).split(",") if g.strip() != ""]


def allocatable(node: Mapping[str, Any]) -> int:
    return int((node.get("status", {}).get("allocatable") or {}).get(GPU, 0))


def scheduler(pod: Mapping[str, Any]) -> str:
    return str(pod.get("spec", {}).get("schedulerName") or DEFAULT_SCHEDULER)


def _name(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


@dataclass
class Episode:
    """A node over its GPUs by the pods of both schedulers, from one state to another."""

    node: str
    opened: int  # state index
    worst: int  # most GPUs over
    pods: dict[str, str] = field(default_factory=dict)  # pod -> scheduler, while it lasted
    closed: int | None = None
    left: dict[str, str] = field(default_factory=dict)  # pods whose leaving ended it

    @property
    def yielded(self) -> bool:
        return SHORTHOP in self.left.values()

    def __str__(self) -> str:
        end = (
            f"ended at state {self.closed} when {sorted(self.left)} left" if self.closed else "open"
        )
        return f"{self.node} over by {self.worst} GPUs from state {self.opened} ({end})"


class GpuLedger:
    """A ``PodWatch`` check over the nodes of ``capacity`` (name -> allocatable GPUs; pods on
    other nodes are ignored)."""

    def __init__(self, capacity: Mapping[str, int]) -> None:
        self.capacity = dict(capacity)
        self.states = 0
        self.episodes: list[Episode] = []
        self._open: dict[str, Episode] = {}

    def __call__(self, pods: Mapping[str, Mapping[str, Any]]) -> list[str]:
        state = self.states
        self.states += 1
        on_node: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for pod in pods.values():
            if active(pod) and pod["spec"]["nodeName"] in self.capacity:
                on_node[pod["spec"]["nodeName"]].append(pod)
        out: list[str] = []
        for node, capacity in self.capacity.items():
            here = on_node.get(node, [])
            by_scheduler: dict[str, int] = defaultdict(int)
            owners: dict[int, str] = {}
            for pod in here:
                by_scheduler[scheduler(pod)] += gpu_request(pod)
                for gpu in gpu_indices(pod) or []:
                    if not 0 <= gpu < capacity:
                        out.append(f"{_name(pod)}: GPU {gpu} does not exist on {node}")
                    other = owners.setdefault(gpu, _name(pod))
                    if other != _name(pod):
                        out.append(f"GPU {gpu} of {node} held by {other} and {_name(pod)}")
            for who, count in sorted(by_scheduler.items()):
                if count > capacity:
                    out.append(f"{node}: {who}'s pods alone request {count} of {capacity} GPUs")
            self._track(node, state, sum(by_scheduler.values()) - capacity, here)
        return out

    def _track(self, node: str, state: int, over: int, here: list[Mapping[str, Any]]) -> None:
        present = {_name(p): scheduler(p) for p in here}
        episode = self._open.get(node)
        if over > 0:
            if episode is None:
                episode = self._open[node] = Episode(node, state, over)
                self.episodes.append(episode)
            episode.worst = max(episode.worst, over)
            episode.pods.update(present)
        elif episode is not None:
            episode.closed = state
            episode.left = {p: s for p, s in episode.pods.items() if p not in present}
            del self._open[node]

    def open_episodes(self) -> list[str]:
        """Nodes over their GPUs at the last state seen."""
        return sorted(self._open)

    def unresolved(self) -> list[str]:
        """Episodes still open, or ended otherwise than by a pod of shorthop's leaving."""
        return [str(e) for e in self.episodes if e.closed is None or not e.yielded]

    def summary(self) -> dict[str, Any]:
        return {
            "states": self.states,
            "overcommit_episodes": len(self.episodes),
            "worst_gpus_over": max((e.worst for e in self.episodes), default=0),
            "episodes": [str(e) for e in self.episodes[:10]],
        }
