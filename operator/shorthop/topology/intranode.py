"""How the GPUs inside one node are linked: presets per product family and nvidia-smi matrices.

An :class:`IntraNodeModel` is a small typed graph over one node's GPUs (indices ``0..gpus-1``),
an optional NVSwitch vertex, NUMA-node vertices where known, and NICs where known. ``graph``
instantiates it per node; ``index`` computes its distance matrix once per distinct model. Models
are frozen and hashable, so equal nodes share one class.

Presets (by ``nvidia.com/gpu.product``):

- HGX/DGX A100, H100, H200, B100, B200, B300 (SXM): every pair through NVSwitch; GPUs 0..n/2-1 on
  NUMA node 0, the rest on NUMA node 1.
- GB200/GB300 compute trays: the GPUs join the rack's multi-node NVLink domain (``gpu.clique``);
  inside the tray they hang off two Grace CPUs. Without a clique label the fabric is assumed
  down and only the CPU path is modelled.
- DGX-1 V100 (SXM2, 8 GPUs): the hybrid cube-mesh of NV1/NV2 links.
- PCIe cards (L40S, L4, A10, H100 PCIe/NVL, RTX, ...) and unknown products: PCIe only. Split by
  NUMA node when the layout is known (label ``shorthop.io/gpu-numa``), otherwise every pair is
  assumed to cross CPU sockets (``SYS``), the conservative choice.

A node annotation ``shorthop.io/nvidia-smi-topo`` with real ``nvidia-smi topo -m`` output
overrides the preset for that node (see :func:`model_from_matrix`). On a node whose GPUs are
published in a ResourceSlice (Dynamic Resource Allocation) the slice's ``pcieRoot`` and
``numaNode`` attributes refine a PCIe preset (see :func:`with_device_layout`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shorthop.topology import smi
from shorthop.topology.links import LinkKind

NVSWITCH_PRODUCTS = (
    "A100-SXM",
    "H100-SXM",
    "H100-80GB-HBM3",
    "H200",
    "B100",
    "B200",
    "B300",
    "H800",
    "A800-SXM",
)
NVL_TRAY_PRODUCTS = ("GB200", "GB300")
PCIE_MARKERS = ("PCIE", "-NVL", "PCI-E")

# DGX-1 (V100) hybrid cube-mesh, from NVIDIA's published topology: (i, j, links).
_DGX1_CUBE_MESH = (
    (0, 1, 1), (0, 2, 1), (0, 3, 2), (0, 4, 2), (1, 2, 2), (1, 3, 1), (1, 5, 2), (2, 3, 2),
    (2, 6, 1), (3, 7, 1), (4, 5, 1), (4, 6, 1), (4, 7, 2), (5, 6, 2), (5, 7, 1), (6, 7, 2),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IntraNodeModel:
    """The links inside one node.

    ``pairs`` lists direct GPU-GPU edges ``(i, j, kind)`` with ``i < j``; ``numa`` gives each GPU's
    NUMA node (or is ``None``); ``nics`` gives, per known NIC, each GPU's link kind to it;
    ``nvswitch`` adds one switch vertex every GPU links to; ``nvlink_domain`` says the GPUs
    attach to the multi-node NVLink fabric when the node carries a clique label.
    """

    name: str
    gpus: int
    pairs: tuple[tuple[int, int, LinkKind], ...] = ()
    nvswitch: bool = False
    numa: tuple[int, ...] | None = None
    nics: tuple[tuple[LinkKind, ...], ...] = ()
    nvlink_domain: bool = False

    def describe(self) -> str:
        return f"{self.name}/{self.gpus}"


def _halves(gpus: int) -> tuple[int, ...]:
    return tuple(0 if i < (gpus + 1) // 2 else 1 for i in range(gpus))


def _pcie_pairs(gpus: int, numa: tuple[int, ...] | None) -> tuple[tuple[int, int, LinkKind], ...]:
    pairs = []
    for i in range(gpus):
        for j in range(i + 1, gpus):
            same = numa is not None and numa[i] == numa[j]
            pairs.append((i, j, LinkKind.NODE if same else LinkKind.SYS))
    return tuple(pairs)


def nvswitch_model(gpus: int) -> IntraNodeModel:
    return IntraNodeModel("hgx-nvswitch", gpus, nvswitch=True, numa=_halves(gpus))


def nvl_tray_model(gpus: int) -> IntraNodeModel:
    numa = _halves(gpus)
    return IntraNodeModel(
        "nvl-tray", gpus, pairs=_pcie_pairs(gpus, numa), numa=numa, nvlink_domain=True
    )


def pcie_model(gpus: int, numa: tuple[int, ...] | None = None) -> IntraNodeModel:
    name = "pcie-numa" if numa is not None else "pcie-conservative"
    return IntraNodeModel(name, gpus, pairs=_pcie_pairs(gpus, numa), numa=numa)


def dgx1_model() -> IntraNodeModel:
    numa = _halves(8)
    linked = {(i, j) for i, j, _ in _DGX1_CUBE_MESH}
    pairs = [(i, j, LinkKind.NVLINK) for i, j, _ in _DGX1_CUBE_MESH]
    pairs += [
        (i, j, LinkKind.SYS)
        for i in range(8)
        for j in range(i + 1, 8)
        if (i, j) not in linked and numa[i] != numa[j]
    ]
    pairs += [
        (i, j, LinkKind.NODE)
        for i in range(8)
        for j in range(i + 1, 8)
        if (i, j) not in linked and numa[i] == numa[j]
    ]
    return IntraNodeModel("dgx1-cube-mesh", 8, pairs=tuple(sorted(pairs)), numa=numa)


def preset_for(
    product: str, gpus: int, numa: tuple[int, ...] | None = None
) -> tuple[IntraNodeModel, bool]:
    """The preset model for a product label and GPU count; the flag says whether the product
    was recognised (unknown products get the conservative PCIe model)."""
    upper = product.upper()
    if any(marker in upper for marker in NVL_TRAY_PRODUCTS):
        return nvl_tray_model(gpus), True
    if "V100-SXM2" in upper and gpus == 8:
        return dgx1_model(), True
    if any(marker in upper for marker in PCIE_MARKERS):
        return pcie_model(gpus, numa), True
    if any(marker in upper for marker in NVSWITCH_PRODUCTS):
        return nvswitch_model(gpus), True
    known_pcie = (
        "L40",
        "L4",
        "A10",
        "A30",
        "A40",
        "T4",
        "RTX",
        "A16",
        "A2",
        "V100-PCIE",
        "P100",
        "P40",
        "H20",
    )
    if any(marker in upper for marker in known_pcie):
        return pcie_model(gpus, numa), True
    return pcie_model(gpus, numa), False


def with_device_layout(
    model: IntraNodeModel,
    roots: tuple[str | None, ...] | None,
    numa: tuple[int, ...] | None,
) -> IntraNodeModel:
    """A preset refined by what a ResourceSlice says of each GPU: its PCIe root complex
    (``resource.kubernetes.io/pcieRoot``) and NUMA node (``resource.kubernetes.io/numaNode``).

    NVLink in the preset stays (a slice says nothing of NVLink); the NUMA split is replaced when
    every GPU's is known. Where the preset has only PCIe between two GPUs, the pair is ``PHB``
    under one root complex (its path reaches at most the host bridge; a PCIe switch below it
    would make it closer, which a slice does not say), ``NODE`` across root complexes of one
    NUMA node, and ``SYS`` across NUMA nodes or where either is unknown.

    >>> m = with_device_layout(pcie_model(4), ("pci0000:00",) * 2 + ("pci0000:80",) * 2,
    ...                        (0, 0, 1, 1))
    >>> [kind.value for _, _, kind in m.pairs]
    ['phb', 'sys', 'sys', 'sys', 'sys', 'phb']
    """
    if numa is not None and len(numa) != model.gpus:
        numa = None
    if roots is not None and (len(roots) != model.gpus or not any(roots)):
        roots = None
    if roots is None and numa is None:
        return model
    nvlink = {(i, j) for i, j, kind in model.pairs if kind == LinkKind.NVLINK}
    if model.nvswitch or (nvlink and roots is None):
        return replace(model, numa=numa if numa is not None else model.numa)
    pairs = []
    for i in range(model.gpus):
        for j in range(i + 1, model.gpus):
            if (i, j) in nvlink:
                pairs.append((i, j, LinkKind.NVLINK))
            elif roots is not None and roots[i] is not None and roots[i] == roots[j]:
                pairs.append((i, j, LinkKind.PHB))
            elif numa is not None and numa[i] == numa[j]:
                pairs.append((i, j, LinkKind.NODE))
            else:
                pairs.append((i, j, LinkKind.SYS))
    name = model.name if nvlink or model.nvlink_domain else "pcie-roots"
    return replace(model, name=name, pairs=tuple(pairs), numa=numa if numa else model.numa)


_RELATION_KIND = {
    "NV": LinkKind.NVLINK,
    "PIX": LinkKind.PIX,
    "PXB": LinkKind.PXB,
    "PHB": LinkKind.PHB,
    "NODE": LinkKind.NODE,
    "SYS": LinkKind.SYS,
}


def model_from_matrix(matrix: smi.TopoMatrix) -> IntraNodeModel:
    """The model of a node from its ``nvidia-smi topo -m`` matrix: one direct edge per GPU pair
    with the pair's relation, NUMA nodes from the affinity columns, and every NIC with each GPU's
    relation to it."""
    pairs = tuple(
        (i, j, _RELATION_KIND[matrix.gpu[i][j].code])
        for i in range(matrix.gpus)
        for j in range(i + 1, matrix.gpus)
    )
    nics = tuple(
        tuple(_RELATION_KIND[matrix.gpu_nic[i][k].code] for i in range(matrix.gpus))
        for k in range(len(matrix.nics))
    )
    return IntraNodeModel(
        "nvidia-smi", matrix.gpus, pairs=pairs, numa=matrix.numa_groups(), nics=nics
    )
