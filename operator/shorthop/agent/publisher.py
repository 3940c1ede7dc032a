"""The node agent's loop: read the topology, annotate the Node when it changed, report failures.

Each round reads (``agent.reader``: NVML, else ``nvidia-smi topo -m``), renders the two
annotations (:func:`desired`), compares them with the Node's and patches only what differs, with
a one-line summary in the log. A round that fails (nothing could be read, or the API refused)
is logged; a failed reading also becomes a Warning Event on the Node (once per distinct
message). Then the loop waits: ``interval`` after success, an exponential backoff after failure
(``backoff_initial`` doubling up to ``backoff_max``). It never exits on a failure, so a node
without a working driver does not crash-loop; ``--once`` runs one round and reports by exit
status instead. Liveness/readiness: :class:`Health` (see ``commands/node_agent.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from shorthop.agent.kube import AgentKubeError
from shorthop.agent.reader import ReadError, Result
from shorthop.topology import hardware, labels, smi

ANNOTATIONS = (labels.SMI_ANNOTATION, labels.TOPOLOGY_ANNOTATION)
log = logging.getLogger("shorthop.agent")


class NodeApi(Protocol):
    """What the loop needs from the API (``agent.kube.NodeClient``, or a test double)."""

    def annotations(self) -> dict[str, str]: ...

    def patch_annotations(self, values: Mapping[str, str]) -> None: ...

    def event(self, *, reason: str, message: str, warning: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Timing:
    interval_s: float = 300.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed rounds in a row (0: after a success)."""
        if failures <= 0:
            return self.interval_s
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** (failures - 1)))


def desired(result: Result) -> dict[str, str]:
    """The annotations a reading publishes: the matrix as ``nvidia-smi topo -m`` prints it (for
    people, and for ``labels``), and the structured JSON (UUIDs, PCI ids, clique)."""
    return {
        labels.SMI_ANNOTATION: smi.render(result.matrix),
        labels.TOPOLOGY_ANNOTATION: hardware.encode(result.reading, result.matrix),
    }


def summary(result: Result) -> str:
    """One line: how many GPUs, from where, their links by kind, NICs, NUMA nodes, clique."""
    m, reading = result.matrix, result.reading
    pairs = Counter(str(m.gpu[i][j]) for i in range(m.gpus) for j in range(i + 1, m.gpus))
    links = ", ".join(f"{kind} x{n}" for kind, n in sorted(pairs.items())) or "no pairs"
    names = sorted({g.name for g in reading.gpus if g.name})
    numa = ",".join("?" if n is None else str(n) for n in m.numa_affinity)
    return (
        f"{m.gpus} GPU(s){' ' + '/'.join(names) if names else ''} via {reading.source}: "
        f"GPU pairs {links}; {len(m.nics)} NIC(s); NUMA {numa}; "
        f"clique {reading.clique() or 'none'}"
    )


class Health:
    """What the probes ask: alive while rounds keep starting (a hung NVML call shows up as no
    heartbeat), ready once the first round finished, whatever its outcome (a node whose GPUs
    cannot be read must not block a DaemonSet rollout)."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self.heartbeat = clock()
        self.finished_rounds = 0
        self.busy_since: float | None = None

    def alive(self) -> bool:
        if self.busy_since is None:
            return True
        return self.clock() - self.busy_since < self.stall_s

    def ready(self) -> bool:
        return self.finished_rounds > 0


class Agent:
    """One node's publisher. ``read`` returns a :class:`Result` or raises ``ReadError``;
    ``api`` is ``None`` in a dry run."""

    def __init__(
        self,
        node: str,
        read: Callable[[], Result],
        api: NodeApi | None,
        *,
        timing: Timing = Timing(),
        health: Health | None = None,
    ) -> None:
        self.node = node
        self.read = read
        self.api = api
        self.timing = timing
        self.health = health or Health(stall_s=max(600.0, 3 * timing.interval_s))
        self.last_warning: str | None = None
        self.last: Result | None = None

    def round(self) -> bool:
        """Read and publish once; True when the Node now carries the current reading."""
        self.health.busy_since = self.health.clock()
        try:
            return self._round()
        finally:
            self.health.busy_since = None
            self.health.finished_rounds += 1

    def _round(self) -> bool:
        try:
            result = self.read()
        except ReadError as exc:
            message = f"cannot read the GPU topology of node {self.node}: {exc}"
            log.error("%s", message)
            self._warn("GPUTopologyUnreadable", message)
            return False
        except Exception as exc:  # a driver or binding surprise must not crash-loop the pod
            log.exception("node %s: reading the GPU topology failed unexpectedly", self.node)
            message = (
                f"reading the GPU topology of node {self.node} failed: {type(exc).__name__}: {exc}"
            )
            self._warn("GPUTopologyUnreadable", message)
            return False
        self.last = result
        for note in result.reading.notes:
            log.info("node %s: %s", self.node, note)
        if self.api is None:
            return True
        wanted = desired(result)
        try:
            current = self.api.annotations()
            changed = {k: v for k, v in wanted.items() if current.get(k) != v}
            if not changed:
                log.info("node %s unchanged: %s", self.node, summary(result))
                return True
            self.api.patch_annotations(changed)
        except AgentKubeError as exc:
            log.error("node %s: cannot publish the GPU topology: %s", self.node, exc)
            if exc.status == 403:  # refused by RBAC or the admission policy: say so on the node
                self._warn("GPUTopologyNotPublished", f"the API refused the annotation: {exc}")
            return False
        log.info(
            "node %s annotated (%s): %s", self.node, ", ".join(sorted(changed)), summary(result)
        )
        self.last_warning = None
        return True

    def _warn(self, reason: str, message: str) -> None:
        if self.api is None or message == self.last_warning:
            return
        try:
            self.api.event(reason=reason, message=message, warning=True)
        except AgentKubeError as exc:
            log.error("node %s: cannot post a Warning event either: %s", self.node, exc)
            return
        self.last_warning = message

    def run(self, stop: threading.Event) -> None:
        """Rounds until ``stop`` is set; never raises for a failed round."""
        failures = 0
        while not stop.is_set():
            ok = self.round()
            failures = 0 if ok else failures + 1
            delay = self.timing.delay(failures)
            if not ok:
                log.info("node %s: retrying in %.0fs (failure %d)", self.node, delay, failures)
            stop.wait(delay)
