"""Read a Kubernetes Node into typed descriptions: its topology and its availability.

Input is the Node as a plain mapping (``kubectl get node -o yaml`` / the API's JSON). Output is a
:class:`ParsedNode`: a :class:`NodeTopology` (GPU product and count, intra-node model, NVLink
domain, place in the network) or ``None`` when the node is left out, its :class:`NodeState`
(ready, cordoned, taints), and every :class:`NodeIssue` found. Malformed or contradictory labels
never raise: the node is left out or modelled conservatively and the issue says which label and
how to fix it. Callers: ``graph``/``index`` builders, ``placement.snapshot``, the controller.

Dynamic Resource Allocation: a node whose GPUs a DRA driver publishes in a ResourceSlice (its
:class:`~shorthop.topology.slices.Inventory`, passed in by the snapshot builder) is a *DRA node*:
its GPUs are the slice's devices (no ``nvidia.com/gpu`` allocatable is needed), its
``NodeTopology.devices`` maps GPU indices to device names, and labels that disagree with the slice
are reported (see :func:`derive`).

GPU sharing and MIG: nodes whose GPUs are shared (``nvidia.com/gpu.sharing-strategy`` of
``time-slicing``/``mps``, or ``nvidia.com/gpu.replicas`` > 1) or partitioned (MIG) are left out,
because shorthop places whole GPUs and such nodes advertise slices.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shorthop.errors import TopologyError
from shorthop.topology import hardware, intranode, slices, smi
from shorthop.topology.levels import TopologyConfig

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
COUNT = "nvidia.com/gpu.count"
MEMORY = "nvidia.com/gpu.memory"
FAMILY = "nvidia.com/gpu.family"
MACHINE = "nvidia.com/gpu.machine"
REPLICAS = "nvidia.com/gpu.replicas"
SHARING = "nvidia.com/gpu.sharing-strategy"
MIG_STRATEGY = "nvidia.com/mig.strategy"
SMI_ANNOTATION = "shorthop.io/nvidia-smi-topo"
# Written by the node agent next to SMI_ANNOTATION: JSON with GPU UUIDs, PCI ids and the clique.
TOPOLOGY_ANNOTATION = "shorthop.io/gpu-topology"
NUMA_KEY = "shorthop.io/gpu-numa"
# Placement keeps one 64-bit free-GPU mask per node; a node claiming more is left out here, before
# its intra-node model (quadratic in GPUs) and distance class (cubic) are built.
MAX_GPUS_PER_NODE = 64
_WHOLE = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also accepts "²"

Severity = Literal["info", "warning"]


@dataclass(frozen=True, slots=True)
class NodeIssue:
    """Something about a node's labels; ``excluded`` says the node was left out for it."""

    node: str
    field: str
    problem: str
    fix: str
    excluded: bool
    severity: Severity = "warning"

    def message(self) -> str:
        outcome = "node left out" if self.excluded else "modelled conservatively"
        return f"node {self.node}: {self.field} {self.problem}; {self.fix} ({outcome})"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True, slots=True)
class NodeState:
    """Availability, which changes without relabelling: read per planning cycle."""

    name: str
    ready: bool
    unschedulable: bool
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeTopology:
    """Where a node's GPUs sit. ``chain`` holds the raw value of each network level, coarse to
    fine (``None`` where the label is missing)."""

    name: str
    product: str
    gpus: int
    model: intranode.IntraNodeModel
    clique: str | None
    chain: tuple[str | None, ...]
    memory_mib: int | None = None
    family: str | None = None
    machine: str | None = None
    devices: slices.NodeDevices | None = None  # a DRA node: GPU index -> device


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """The parts of a Node that :func:`derive` reads (labels and annotations it uses, the GPU
    allocatable, the state)."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    allocatable_gpus: Any
    mig_resources: bool
    state: NodeState


@dataclass(frozen=True, slots=True)
class ParsedNode:
    name: str
    topology: NodeTopology | None
    state: NodeState
    issues: tuple[NodeIssue, ...]
    facts: NodeFacts | None = None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _agent_clique(
    published: hardware.Published, clique: str | None, config: TopologyConfig, issue: Any
) -> str | None:
    """The NVLink domain once the agent's reading is known: a domain label wins; without one the
    clique the agent read from NVML's fabric info is used. A label and a reading that disagree
    are reported (never silently resolved); a reading from a fake NVML is reported too."""
    if published.source == "fake-nvml":
        issue(
            TOPOLOGY_ANNOTATION,
            "was published from a fake NVML recording (a test option)",
            "run the node agent without --fake-nvml on real GPU nodes",
            excluded=False,
            severity="info",
        )
    if published.clique is None:
        return clique
    if clique is None:
        return published.clique
    if clique != published.clique:
        issue(
            config.nvlink_domain_keys[0],
            f"is {clique!r} but the node agent read clique {published.clique!r} from NVML",
            "check GPU Feature Discovery and the fabric manager on this node; using the label",
            excluded=False,
        )
    return clique


def parse_state(node: Mapping[str, Any]) -> NodeState:
    """Ready condition, ``spec.unschedulable`` and taints; tolerant of missing fields."""
    meta, spec, status = (_mapping(node.get(k)) for k in ("metadata", "spec", "status"))
    name = str(meta.get("name", "?"))
    conditions = status.get("conditions") or []
    ready = any(
        _mapping(c).get("type") == "Ready" and _mapping(c).get("status") == "True"
        for c in (conditions if isinstance(conditions, list) else [])
    )
    listed = spec.get("taints") or []
    taints = tuple(
        Taint(
            str(_mapping(t).get("key", "")),
            str(_mapping(t).get("value") or ""),
            str(_mapping(t).get("effect", "")),
        )
        for t in (listed if isinstance(listed, list) else [])
        if isinstance(t, Mapping)
    )
    return NodeState(
        name=name, ready=ready, unschedulable=bool(spec.get("unschedulable")), taints=taints
    )


def node_facts(node: Mapping[str, Any], config: TopologyConfig) -> NodeFacts:
    """What :func:`derive` reads of a Node: kept by the snapshot builder so that a node can be
    modelled again when its ResourceSlices change, without keeping the whole object."""
    meta = _mapping(node.get("metadata"))
    keys = _read_keys(config)
    labels = {
        str(k): str(v)
        for k, v in _mapping(meta.get("labels")).items()
        if str(k).startswith("nvidia.com/") or k in keys
    }
    annotations = {
        str(k): str(v)
        for k, v in _mapping(meta.get("annotations")).items()
        if k in (SMI_ANNOTATION, TOPOLOGY_ANNOTATION, NUMA_KEY)
    }
    allocatable = _mapping(_mapping(node.get("status")).get("allocatable"))
    return NodeFacts(
        name=str(meta.get("name") or "?"),
        labels=labels,
        annotations=annotations,
        allocatable_gpus=allocatable.get(GPU_RESOURCE),
        mig_resources=any(str(k).startswith("nvidia.com/mig-") for k in allocatable),
        state=parse_state(node),
    )


@functools.lru_cache(maxsize=16)
def _read_keys(config: TopologyConfig) -> frozenset[str]:
    keys = {NUMA_KEY, *config.nvlink_domain_keys}
    for level in config.levels:
        keys.update(level.keys)
    return frozenset(keys)


def parse_node(
    node: Mapping[str, Any],
    config: TopologyConfig,
    inventory: slices.Inventory | None = None,
) -> ParsedNode:
    """Parse one Node object (with the node's ResourceSlice inventory, if it has one).

    Parameters
    ----------
    node : mapping
        The Node as the API returns it (camelCase keys).
    config : TopologyConfig
        Which labels hold the network levels and the NVLink domain.
    inventory : slices.Inventory, optional
        The devices the node publishes in its pool of the configured DRA driver: the node's
        GPUs are then those devices (a *DRA node*), see :func:`derive`.

    Returns
    -------
    ParsedNode
        Never raises on bad labels; see ``issues``.

    Examples
    --------
    >>> from shorthop.topology.levels import preset
    >>> product = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    >>> n = {"metadata": {"name": "n1", "labels": product},
    ...      "status": {"allocatable": {"nvidia.com/gpu": "8"}}}
    >>> p = parse_node(n, preset("plain"))
    >>> p.topology.gpus, p.topology.model.name
    (8, 'hgx-nvswitch')
    """
    return derive(node_facts(node, config), config, inventory)


def derive(
    facts: NodeFacts, config: TopologyConfig, inventory: slices.Inventory | None = None
) -> ParsedNode:
    """The node's topology from its facts and, on a DRA node, its inventory.

    A device-plugin node's GPU count is its ``nvidia.com/gpu`` allocatable (with
    ``nvidia.com/gpu.count`` when it is lower). A DRA node's GPUs are the whole GPUs (devices
    of ``type`` gpu) in its inventory, indexed by :func:`~shorthop.topology.slices.order_gpus`;
    labels that disagree with them (count, product) are reported, the slice wins. Its PCIe
    roots and NUMA nodes refine the product preset; an ``nvidia-smi`` matrix still overrides it.
    """
    name = facts.name
    labels = facts.labels
    annotations = facts.annotations
    state = facts.state
    issues: list[NodeIssue] = []

    def issue(
        field: str, problem: str, fix: str, *, excluded: bool, severity: Severity = "warning"
    ) -> None:
        issues.append(NodeIssue(name, field, problem, fix, excluded, severity))

    def left_out() -> ParsedNode:
        return ParsedNode(name, None, state, tuple(issues), facts)

    clique = next((labels[k] for k in config.nvlink_domain_keys if labels.get(k)), None)
    raw_alloc = facts.allocatable_gpus
    product = labels.get(PRODUCT, "")
    if inventory is not None and inventory.problem:
        issue(
            f"ResourceSlice pool {inventory.driver}/{inventory.pool}",
            inventory.problem,
            "check the DRA driver on this node; its GPUs are not used until the pool is whole",
            excluded=True,
        )
        return left_out()
    if raw_alloc is None and not product and inventory is None:
        if clique:
            issue(
                config.nvlink_domain_keys[0],
                f"is {clique!r} on a node without GPUs",
                "remove the label or fix GPU discovery",
                excluded=True,
            )
        else:
            issue(
                f"status.allocatable[{GPU_RESOURCE}]",
                "is absent",
                "not a GPU node",
                excluded=True,
                severity="info",
            )
        return left_out()

    if "-MIG-" in product.upper() or facts.mig_resources:
        issue(
            MIG_STRATEGY,
            f"shows MIG partitions ({labels.get(MIG_STRATEGY, 'mig')})",
            "shorthop places whole GPUs; disable MIG on GPU nodes it should use",
            excluded=True,
            severity="info",
        )
        return left_out()
    replicas = _int(labels.get(REPLICAS, "1"))
    if labels.get(SHARING, "none") not in ("none", "") or (replicas is not None and replicas > 1):
        issue(
            SHARING,
            f"is {labels.get(SHARING, 'time-slicing')!r} "
            f"with {labels.get(REPLICAS, '?')} replicas per GPU",
            "shorthop places whole GPUs; turn off GPU sharing on nodes it should use",
            excluded=True,
            severity="info",
        )
        return left_out()

    if inventory is not None:
        found = _dra_gpus(facts, inventory, issue)
        if found is None:
            return left_out()
        gpus, product = len(found), product or _sanitise(found[0].product or "")
    else:
        counted = _plugin_gpus(facts, issue)
        if counted is None:
            return left_out()
        gpus = counted
    if gpus > MAX_GPUS_PER_NODE:
        field = f"status.allocatable[{GPU_RESOURCE}]" if inventory is None else "ResourceSlice"
        issue(
            field,
            f"is {gpus}; shorthop models at most {MAX_GPUS_PER_NODE} GPUs per node",
            "check the NVIDIA device plugin and the gpu.count label on this node",
            excluded=True,
        )
        return left_out()

    published = None
    if TOPOLOGY_ANNOTATION in annotations:
        try:
            published = hardware.decode(annotations[TOPOLOGY_ANNOTATION])
        except TopologyError as exc:
            issue(
                TOPOLOGY_ANNOTATION,
                f"cannot be read ({exc})",
                "check the shorthop node agent on this node (or remove the annotation)",
                excluded=False,
            )
    devices: slices.NodeDevices | None = None
    roots: tuple[str | None, ...] | None = None
    slice_numa: tuple[int, ...] | None = None
    if inventory is not None:
        ordered, basis = slices.order_gpus(
            [d for d in inventory.devices if d.whole_gpu],
            published.uuids if published is not None else None,
        )
        devices = slices.node_devices(inventory, ordered, basis)
        if not inventory.complete:
            issue(
                f"ResourceSlice pool {inventory.driver}/{inventory.pool}",
                "is incomplete: the driver is replacing its slices (a newer generation)",
                "no GPU of this node is handed out until every slice of the new generation is "
                "published; pods already there stay",
                excluded=False,
                severity="info",
            )
        roots = tuple(d.pcie_root for d in ordered)
        known_numa = [d.numa for d in ordered if d.numa is not None]
        slice_numa = tuple(known_numa) if len(known_numa) == gpus else None
        if published is not None and basis != "node agent UUIDs":
            issue(
                TOPOLOGY_ANNOTATION,
                "lists GPU UUIDs that are not the devices of the node's ResourceSlice",
                f"GPU indices follow the {basis} order; restart the node agent",
                excluded=False,
            )
    if not product:
        issue(PRODUCT, "is missing", "run GPU Feature Discovery on this node", excluded=False)
        product = "unknown"

    numa = None
    if NUMA_KEY in labels or NUMA_KEY in annotations:
        raw = labels.get(NUMA_KEY) or annotations.get(NUMA_KEY, "")
        parts = [p.strip() for p in raw.replace("_", ",").replace(".", ",").split(",")]
        if len(parts) == gpus and all(_WHOLE.fullmatch(p) for p in parts):
            numa = tuple(int(p) for p in parts)
        else:
            issue(
                NUMA_KEY,
                f"is {raw!r}",
                f"give one NUMA node per GPU, e.g. {','.join(['0'] * gpus)}",
                excluded=False,
            )

    if numa is None:
        numa = slice_numa
    model, known = intranode.preset_for(product, gpus, numa)
    if devices is not None:
        model = intranode.with_device_layout(model, roots, numa)
    if not known:
        issue(
            PRODUCT,
            f"{product!r} is not a known product",
            "assuming PCIe across CPU sockets; "
            "add an nvidia-smi topology annotation for an exact model",
            excluded=False,
        )
    matrix: smi.TopoMatrix | None = None
    if SMI_ANNOTATION in annotations:
        try:
            matrix = smi.parse(annotations[SMI_ANNOTATION])
        except TopologyError as exc:
            issue(
                SMI_ANNOTATION,
                f"cannot be parsed ({exc})",
                "paste `nvidia-smi topo -m` output unchanged",
                excluded=False,
            )
    elif published is not None:
        matrix = published.matrix
    if matrix is not None:
        source = SMI_ANNOTATION if SMI_ANNOTATION in annotations else TOPOLOGY_ANNOTATION
        if matrix.gpus != gpus:
            issue(
                source,
                f"describes {matrix.gpus} GPUs but the node has {gpus}",
                "capture nvidia-smi topo -m on this node (or restart its node agent)",
                excluded=False,
            )
        else:
            model = intranode.model_from_matrix(matrix)
    if published is not None:
        clique = _agent_clique(published, clique, config, issue)
    if model.nvlink_domain and clique is None:
        issue(
            config.nvlink_domain_keys[-1],
            f"is missing on a {product} tray",
            "the NVLink fabric looks down (check the IMEX/fabric manager); using the CPU path only",
            excluded=False,
        )

    chain = tuple(
        next((labels[k] for k in level.keys if labels.get(k)), None) for level in config.levels
    )
    topology = NodeTopology(
        name=name,
        product=product,
        gpus=gpus,
        model=model,
        clique=clique,
        chain=chain,
        memory_mib=_int(labels.get(MEMORY)),
        family=labels.get(FAMILY),
        machine=labels.get(MACHINE),
        devices=devices,
    )
    return ParsedNode(name, topology, state, tuple(issues), facts)


def _plugin_gpus(facts: NodeFacts, issue: Any) -> int | None:
    """A device-plugin node's GPU count: allocatable ``nvidia.com/gpu``, lowered to
    ``nvidia.com/gpu.count`` when that says fewer; None when the node is left out."""
    labels, raw_alloc = facts.labels, facts.allocatable_gpus
    allocatable_gpus = _int(raw_alloc) if raw_alloc is not None else None
    if raw_alloc is not None and allocatable_gpus is None:
        issue(
            f"status.allocatable[{GPU_RESOURCE}]",
            f"is {raw_alloc!r}, not a whole number",
            "check the NVIDIA device plugin on this node",
            excluded=True,
        )
        return None
    label_count = _int(labels.get(COUNT)) if COUNT in labels else None
    if COUNT in labels and label_count is None:
        issue(
            COUNT,
            f"is {labels[COUNT]!r}, not a number",
            "GPU Feature Discovery writes an integer; relabel the node",
            excluded=allocatable_gpus is None,
        )
        if allocatable_gpus is None:
            return None
    if allocatable_gpus is None:
        issue(
            f"status.allocatable[{GPU_RESOURCE}]",
            "is absent",
            "install the NVIDIA device plugin so the node advertises nvidia.com/gpu, "
            "or the NVIDIA DRA driver so it publishes its GPUs in a ResourceSlice",
            excluded=True,
        )
        return None
    if allocatable_gpus <= 0:
        issue(
            f"status.allocatable[{GPU_RESOURCE}]",
            "is 0",
            "no GPU can be placed here",
            excluded=True,
            severity="info",
        )
        return None
    gpus = allocatable_gpus
    if label_count is not None and label_count != allocatable_gpus:
        gpus = min(label_count, allocatable_gpus)
        issue(
            COUNT,
            f"says {label_count} GPUs but {allocatable_gpus} are allocatable",
            f"using {gpus}; check for unhealthy GPUs or a stale label",
            excluded=False,
        )
    if gpus <= 0:
        # gpu.count says 0 (every GPU unhealthy, or a stale label): nothing to model. A 0-GPU node
        # in the index broke every snapshot built over it (found by chaos/test_fuzz.py).
        issue(COUNT, "is 0", "no GPU can be placed here", excluded=True, severity="info")
        return None
    return gpus


def _sanitise(product: str) -> str:
    """A product name as GPU Feature Discovery labels it (``NVIDIA H100 80GB HBM3`` ->
    ``NVIDIA-H100-80GB-HBM3``)."""
    return "-".join(product.split())


def _dra_gpus(
    facts: NodeFacts, inventory: slices.Inventory, issue: Any
) -> list[slices.Device] | None:
    """A DRA node's GPUs: the whole GPUs of its inventory. Labels that disagree are reported
    and the slice wins; None when the node is left out (no whole GPU)."""
    where = f"ResourceSlice pool {inventory.driver}/{inventory.pool}"
    gpus = [d for d in inventory.devices if d.whole_gpu]
    if not gpus:
        issue(
            where,
            f"lists no whole GPU (a device of type {slices.GPU_TYPE!r}) among "
            f"{len(inventory.devices)} devices",
            "shorthop places whole GPUs; MIG-only or passthrough-only GPUs are not used",
            excluded=True,
            severity="info",
        )
        return None
    label_count = _int(facts.labels.get(COUNT)) if COUNT in facts.labels else None
    if COUNT in facts.labels and label_count != len(gpus):
        issue(
            COUNT,
            f"says {facts.labels[COUNT]} GPUs but {where} publishes {len(gpus)}",
            f"using the {len(gpus)} published devices; check for unhealthy GPUs or a stale label",
            excluded=False,
        )
    if facts.allocatable_gpus is not None:
        issue(
            f"status.allocatable[{GPU_RESOURCE}]",
            f"is {facts.allocatable_gpus!r} while {where} publishes the GPUs too",
            "run either the NVIDIA device plugin or the DRA driver for a node's GPUs; shorthop "
            "allocates the devices and counts the device plugin's pods as well",
            excluded=False,
        )
    labelled = facts.labels.get(PRODUCT)
    products = sorted({_sanitise(d.product) for d in gpus if d.product})
    if len(products) > 1:
        issue(
            where,
            f"lists GPUs of several products ({', '.join(products)})",
            "shorthop models one product per node; using the first",
            excluded=False,
        )
    if labelled and products and _sanitise(labelled).upper() != products[0].upper():
        issue(
            PRODUCT,
            f"is {labelled!r} but {where} says {products[0]!r}",
            "check GPU Feature Discovery on this node; using the label for the preset",
            excluded=False,
        )
    return gpus
