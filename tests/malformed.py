"""Malformed inputs for fuzzing: hypothesis strategies of node label sets, ``nvidia-smi topo -m``
captures and cluster snapshot files, and runners that push one input through shorthop and tally
how it ended (``tests/plan_cli.py`` runs ``shorthop plan`` on a file).

The rule they check: only shorthop's own documented errors (:class:`shorthop.errors.ShorthopError`
and its subclasses, carrying a message) may come out; any other exception *escapes*. For the
``shorthop plan`` CLI, a bad file must end with exit status 1 and exactly one line on stderr.
A :class:`Tally` given ``slow_seconds`` (the chaos runs) also fails an input that costs more CPU
than that (a label that makes shorthop model a million GPUs is a failure too, even if nothing
raises); unit tests bound the work by sizes instead, never by the clock.

Used by ``tests/unit/topology/test_fuzz_inputs.py`` and ``tests/unit/test_cli_plan_fuzz.py``
(small, in ``make test``) and by ``chaos/test_fuzz.py`` (at least 1,000 of each at full scale).
"""

from __future__ import annotations

import json
import os
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st
from shorthop.errors import ShorthopError
from shorthop.topology import domains, fake, graph, index, intranode, labels, smi
from shorthop.topology.levels import PRESETS, TopologyConfig

ROOT = Path(__file__).resolve().parents[1]
SMI_CAPTURES = tuple(
    p.read_text() for p in sorted((ROOT / "tests" / "fixtures" / "nvidia-smi").glob("*/*.txt"))
)
MINIMAL = ROOT / "docs" / "examples" / "minimal.yaml"
SLOW_SECONDS = 10.0  # chaos: one input costing more CPU seconds is a failure (denial of service)


# -- tallies ---------------------------------------------------------------------------------


def safe_repr(value: Any, limit: int = 300) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # e.g. an int too long to print
        text = f"<unprintable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[:limit] + "..."


def where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of shorthop that raised, else the innermost."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/shorthop/" in f.filename] or frames
    if not ours:
        return "?"
    frame = ours[-1]
    return f"{frame.filename.rsplit('/shorthop/', 1)[-1]}:{frame.lineno}"


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Tally:
    """How a batch of inputs ended: fine, a documented error, or an escape (with examples).
    With ``slow_seconds``, an input that costs more CPU seconds (this process and the children it
    waited for) is a failure too: CPU time, not wall time, so a busy machine does not fail it."""

    slow_seconds: float | None = None
    total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    escaped: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)
    max_seconds: float = 0.0

    def run(self, fn: Callable[[Any], str | None], example: Any) -> None:
        """Run ``fn(example)``; its return value (or ``"ok"``) names the outcome."""
        self.total += 1
        started = _cpu_seconds()
        try:
            outcome = fn(example) or "ok"
        except ShorthopError as exc:
            if str(exc).strip():
                outcome = f"documented:{type(exc).__name__}"
            else:
                outcome = "escaped"
                self.escaped.append(
                    f"{type(exc).__name__} without a message <- {safe_repr(example)}"
                )
        except Exception as exc:
            outcome = "escaped"
            self.escaped.append(
                f"{type(exc).__name__} at {where(exc)}: {safe_repr(str(exc), 200)} "
                f"<- {safe_repr(example)}"
            )
        seconds = _cpu_seconds() - started
        self.max_seconds = max(self.max_seconds, seconds)
        if self.slow_seconds is not None and seconds > self.slow_seconds:
            self.slow.append(f"{seconds:.1f}s <- {safe_repr(example)}")
        self.outcomes[outcome] += 1

    def failures(self) -> list[str]:
        return self.escaped + [f"slow: {s}" for s in self.slow]

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "escaped": len(self.escaped),
            "slow": len(self.slow),
            "max_seconds": round(self.max_seconds, 3),
            "outcomes": dict(sorted(self.outcomes.items())),
            "escapes_by_place": dict(
                Counter(e.split(":", 2)[0] + ":" + e.split(":", 2)[1] for e in self.escaped)
            ),
            "examples_of_escapes": self.escaped[:5],
        }


# -- values ------------------------------------------------------------------------------------

HUGE_DIGITS = "9" * 5000  # more digits than int() accepts by default (4300)
NUMBERS = (
    "0", "1", "2", "4", "8", "08", " 8 ", "+8", "-1", "-8", "1e3", "8.0", "0x8", "64", "65",
    "72", "4096", "100000000", "99999999999999999999", HUGE_DIGITS, "²", "¹²", "١٢", "８", "",
    " ", "NaN", "inf", "8Gi", "500m", "1e999999999", "1e999999", "1e-5",
)  # fmt: skip
PRODUCTS = (
    "NVIDIA-H100-80GB-HBM3", "NVIDIA-GB200", "NVIDIA-H200", "Tesla-V100-SXM2-16GB",
    "NVIDIA-L40S", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "NVIDIA-H100-PCIe", "NVIDIA-H100-NVL",
    "unknown", "", "GB300", "x" * 300, "NVIDIA-B200",
)  # fmt: skip
WORDS = (
    "none", "time-slicing", "mps", "mixed", "single", "true", "false", "rack-1", "zone-a",
    "clique.0", "0,0,1,1", "0,1", "0_0_1_1", "0.0.1.1", ",", ",,", "0,,1", "²,²", "N/A", "-",
)  # fmt: skip
GPU_KEYS = (
    labels.PRODUCT, labels.COUNT, labels.MEMORY, labels.FAMILY, labels.MACHINE, labels.REPLICAS,
    labels.SHARING, labels.MIG_STRATEGY, labels.NUMA_KEY,
)  # fmt: skip
TOPOLOGY_KEYS = tuple(
    sorted(
        {k for c in PRESETS.values() for level in c.levels for k in level.keys}
        | {k for c in PRESETS.values() for k in c.nvlink_domain_keys}
    )
)
LABEL_KEYS = GPU_KEYS + TOPOLOGY_KEYS + ("kubernetes.io/hostname",)


def text(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


def scalars() -> st.SearchStrategy[Any]:
    """Any JSON-ish scalar, as a YAML or JSON file could hold it."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        text(),
        st.sampled_from(NUMBERS),
    )


def garbage() -> st.SearchStrategy[Any]:
    """A scalar or a small wrongly-shaped container."""
    return st.one_of(
        scalars(),
        st.lists(scalars(), max_size=3),
        st.dictionaries(text(8), scalars(), max_size=3),
    )


def label_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(NUMBERS + PRODUCTS + WORDS),
        text(),
        garbage(),
    )


# -- node label sets ----------------------------------------------------------------------------


def _base_labels(kind: str, n: int) -> tuple[dict[str, Any], str]:
    """A realistic label set and its GPU count for a node of ``kind``."""
    if kind == "gb200":
        return {
            labels.PRODUCT: "NVIDIA-GB200",
            labels.COUNT: "4",
            "nvidia.com/gpu.clique": f"uuid.{n % 2}",
            "topology.kubernetes.io/zone": "z0",
            "topology.shorthop.io/block": "b0",
            "topology.shorthop.io/rack": f"r{n % 2}",
        }, "4"
    if kind == "l40s":
        return {labels.PRODUCT: "NVIDIA-L40S", labels.COUNT: "4", labels.NUMA_KEY: "0,0,1,1"}, "4"
    if kind == "v100":
        return {labels.PRODUCT: "Tesla-V100-SXM2-16GB", labels.COUNT: "8"}, "8"
    return {
        labels.PRODUCT: "NVIDIA-H100-80GB-HBM3",
        labels.COUNT: "8",
        labels.SHARING: "none",
        "topology.kubernetes.io/zone": "z0",
        "topology.shorthop.io/block": f"b{n % 2}",
        "topology.shorthop.io/rack": f"r{n}",
        "fabric.topograph.run/tier-0": f"leaf{n}",
        "topology.k8s.aws/network-node-layer-3": f"nn{n}",
    }, "8"


@st.composite
def node_objects(draw: Any, n: int = 0) -> dict[str, Any]:
    """A Node that starts realistic and then has some of its labels, annotations, allocatable,
    state or structure broken."""
    kind = draw(st.sampled_from(("h100", "gb200", "l40s", "v100")))
    node_labels, gpus = _base_labels(kind, n)
    node_labels = dict(node_labels)
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.one_of(st.sampled_from(LABEL_KEYS), text(20)))
        if draw(st.booleans()) and key in node_labels:
            del node_labels[key]
        else:
            node_labels[key] = draw(label_values())
    allocatable: Any = {"cpu": "64", "memory": "1Ti", "pods": "110", labels.GPU_RESOURCE: gpus}
    if draw(st.integers(0, 3)) == 0:
        allocatable[labels.GPU_RESOURCE] = draw(
            st.one_of(st.sampled_from(NUMBERS), scalars(), st.integers(-5, 200))
        )
    if draw(st.integers(0, 9)) == 0:
        del allocatable[labels.GPU_RESOURCE]
    if draw(st.integers(0, 9)) == 0:
        allocatable["nvidia.com/mig-1g.5gb"] = "7"
    annotations: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        annotations[labels.SMI_ANNOTATION] = draw(smi_texts())
    if draw(st.integers(0, 5)) == 0:
        annotations[labels.NUMA_KEY] = draw(label_values())
    meta: dict[str, Any] = {"name": f"n{n}", "labels": node_labels, "annotations": annotations}
    spec: dict[str, Any] = {}
    status: dict[str, Any] = {
        "allocatable": allocatable,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    # Structural breakage: a whole part of the object of the wrong shape.
    for _ in range(draw(st.integers(0, 2))):
        part = draw(
            st.sampled_from(
                ("name", "labels", "annotations", "allocatable", "status", "spec", "taints",
                 "conditions", "unschedulable", "metadata")
            )
        )  # fmt: skip
        value = draw(garbage())
        if part in ("name", "labels", "annotations") and isinstance(meta, dict):
            meta[part] = value
        elif part == "allocatable" and isinstance(status, dict):
            status["allocatable"] = value
        elif part == "conditions" and isinstance(status, dict):
            status["conditions"] = draw(st.one_of(garbage(), st.lists(garbage(), max_size=3)))
        elif part in ("taints", "unschedulable") and isinstance(spec, dict):
            spec[part] = draw(st.one_of(garbage(), st.lists(garbage(), max_size=3)))
        elif part == "status":
            status = value
        elif part == "spec":
            spec = value
        else:
            meta = value
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec, "status": status}


@st.composite
def node_label_sets(draw: Any) -> list[dict[str, Any]]:
    """One to five malformed nodes (names may repeat)."""
    count = draw(st.integers(1, 5))
    return [draw(node_objects(n=draw(st.integers(0, count)))) for _ in range(count)]


CONFIGS: tuple[TopologyConfig, ...] = tuple(PRESETS.values())


def through_topology(nodes: list[dict[str, Any]]) -> str:
    """Push a label set through the topology layer, for every preset: parse each node (issues
    formatted), build the distance index (from scratch and incrementally), query it, and build
    the NetworkX graph when it is small. Returns how many nodes were modelled (as an outcome)."""
    modelled = 0
    for config in CONFIGS:
        parsed = [labels.parse_node(node, config) for node in nodes]
        for p in parsed:
            for issue in p.issues:
                assert issue.message(), issue
        topos = [p.topology for p in parsed if p.topology is not None]
        # The work bound, checked by size rather than by the clock: whatever the labels claim,
        # no node is modelled with more GPUs than placement can hold.
        for topo in topos:
            assert 0 < topo.gpus <= labels.MAX_GPUS_PER_NODE, (topo.name, topo.gpus)
        idx = index.build_index(topos, config)
        rows = [int(r) for r in idx.rows()]
        for a in rows[:3]:
            for b in rows[:3]:
                last = idx.gpus(b) - 1
                idx.distance(a, 0, b, last)
                idx.tier(a, 0, b, last)
        builder = index.IndexBuilder(config)
        for topo in topos:
            builder.upsert(topo)
        builder.freeze()
        if topos:
            builder.remove(topos[0].name)
            builder.upsert(topos[-1])
            builder.freeze()
        domains.effective_chains((t.name, t.clique, t.chain) for t in topos)
        if sum(t.gpus for t in topos) <= 256:
            graph.build_graph(topos, config)
        modelled = max(modelled, len(topos))
    return f"modelled:{min(modelled, 2)}{'+' if modelled > 2 else ''}"


# -- nvidia-smi topo -m ---------------------------------------------------------------------------

LINK_CODES = ("PIX", "PXB", "PHB", "NODE", "SYS", "SOC", "NV1", "NV2", "NV4", "NV12", "NV18")
BAD_CELLS = (
    "", "NV0", "NV-1", "NV" + HUGE_DIGITS, "NV²", "nv4", "X", "Q", "N/A", "NV", "x", "SYS SYS",
    "NV99999999999999999999", "\x1b[4mNV4\x1b[0m", "NODE\r",
)  # fmt: skip
AFFINITY = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
AFFINITY_VALUES = ("0-31", "0-31,64-95", "N/A", "0", "1", "-1", "²", HUGE_DIGITS, "", "١")


@st.composite
def _matrix_text(draw: Any) -> str:
    """A well-formed capture of random shape, then broken in a few places."""
    gpus = draw(st.one_of(st.integers(1, 9), st.sampled_from((16, 65))))
    nic_count = draw(st.integers(0, 3))
    nic_names = [
        draw(st.sampled_from((f"NIC{k}", f"mlx5_{k}", f"NIC{k + 1}"))) for k in range(nic_count)
    ]
    devices = [f"GPU{i}" for i in range(gpus)] + nic_names
    affinity = [a for a in AFFINITY if draw(st.booleans())]
    cells: dict[tuple[int, int], str] = {}
    for i in range(len(devices)):
        for j in range(i, len(devices)):
            code = "X" if i == j else draw(st.sampled_from(LINK_CODES))
            cells[i, j] = cells[j, i] = code
    header = ["", *devices, *affinity]
    rows = [header]
    for i, name in enumerate(devices):
        row = [name] + [cells[i, j] if cells[i, j] != "X" else " X " for j in range(len(devices))]
        if i < gpus:
            row += [draw(st.sampled_from(AFFINITY_VALUES[:5])) for _ in affinity]
        rows.append(row)
    # Breakage: each edit touches the grid before it is joined.
    for _ in range(draw(st.integers(0, 3))):
        edit = draw(
            st.sampled_from(
                ("cell", "asymmetric", "drop-cell", "drop-row", "dup-row", "swap-header",
                 "gpu-name", "affinity", "extra-cell", "affinity-first")
            )
        )  # fmt: skip
        if len(rows) < 2:
            break
        r = draw(st.integers(1, len(rows) - 1))
        c = draw(st.integers(1, len(rows[r]) - 1)) if len(rows[r]) > 1 else 0
        if edit == "cell" and c:
            rows[r][c] = draw(st.one_of(st.sampled_from(BAD_CELLS), text(6)))
        elif edit == "asymmetric" and c and c < len(rows):
            rows[r][c] = "PIX" if rows[c][r] != "PIX" else "SYS"
        elif edit == "drop-cell" and c:
            del rows[r][c]
        elif edit == "drop-row":
            del rows[r]
        elif edit == "dup-row":
            rows.insert(r, list(rows[r]))
        elif edit == "swap-header" and len(header) > 2:
            header[1], header[2] = header[2], header[1]
        elif edit == "gpu-name":
            at = draw(st.integers(1, len(header) - 1))
            header[at] = draw(
                st.sampled_from(("GPU²", "GPU" + HUGE_DIGITS, "GPU-1", "GPU01", "GPU0", "gpu1"))
            )
        elif edit == "affinity" and affinity:
            rows[r].append(draw(st.sampled_from(AFFINITY_VALUES)))
        elif edit == "extra-cell":
            rows[r].insert(c, draw(st.sampled_from(LINK_CODES + BAD_CELLS)))
        elif edit == "affinity-first":
            header.insert(1, draw(st.sampled_from(AFFINITY)))
    sep: str = draw(st.sampled_from(("\t", "  ", "   ", "\t ")))
    eol: str = draw(st.sampled_from(("\n", "\r\n")))
    body = eol.join(sep.join(row) for row in rows) + eol
    if draw(st.booleans()):
        body += eol + "Legend:" + eol + eol + "  X    = Self" + eol + "  NV#  = NVLinks" + eol
        if nic_names:
            body += eol + "NIC Legend:" + eol + eol
            body += eol.join(f"  NIC{k}: mlx5_{k}" for k in range(nic_count)) + eol
    return body


@st.composite
def _mutated_capture(draw: Any) -> str:
    """A real or handwritten capture with lines deleted, duplicated, swapped or cut, or
    characters replaced."""
    lines = draw(st.sampled_from(SMI_CAPTURES)).splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(("delete", "duplicate", "swap", "chars", "cut", "insert")))
        if edit == "delete":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif edit == "cut":
            lines = lines[:at]
        elif edit == "insert":
            lines.insert(at, draw(text(40)) + "\n")
        else:
            line = lines[at]
            if line:
                pos = draw(st.integers(0, len(line) - 1))
                lines[at] = line[:pos] + draw(text(3)) + line[pos + 1 :]
    return "".join(lines)


def smi_texts() -> st.SearchStrategy[str]:
    return st.one_of(_matrix_text(), _mutated_capture(), text(200))


def through_smi(text_: str) -> str:
    """Parse a capture; if it parses, build the intra-node model, the node's distance class, and
    read it as a node annotation too."""
    try:
        matrix = smi.parse(text_)
    finally:
        # The annotation path must never raise, whatever the parser says.
        node = {
            "metadata": {
                "name": "n",
                "labels": {labels.PRODUCT: "NVIDIA-H100-80GB-HBM3"},
                "annotations": {labels.SMI_ANNOTATION: text_},
            },
            "status": {"allocatable": {labels.GPU_RESOURCE: "8"}},
        }
        for config in CONFIGS[:1]:
            labels.parse_node(node, config)
    model = intranode.model_from_matrix(matrix)
    matrix.numa_groups()
    [str(link) for row in matrix.gpu for link in row]
    if matrix.gpus <= 64:
        for in_clique in (False, True):
            index.compute_class(model, in_clique, CONFIGS[0].weights)
    node["status"] = {"allocatable": {labels.GPU_RESOURCE: str(matrix.gpus)}}
    parsed = labels.parse_node(node, CONFIGS[0])
    return "parsed" if parsed.topology is not None else "parsed-left-out"


# -- snapshot files ---------------------------------------------------------------------------------

SNAPSHOT_SHAPE = fake.ClusterShape(nvl72_racks=1, trays_per_rack=4, hgx_units=1, nodes_per_unit=4)


def base_snapshot() -> dict[str, Any]:
    nodes = fake.nodes(SNAPSHOT_SHAPE)
    return fake.as_list([*nodes, *fake.background_pods(nodes, 0.2, seed=3)])


# Paths (keys; ints index lists; "*" any item) and the garbage that can replace what is there.
SNAPSHOT_TARGETS = (
    ("items",), ("kind",), ("items", "*"), ("items", "*", "kind"), ("items", "*", "metadata"),
    ("items", "*", "metadata", "name"), ("items", "*", "metadata", "labels"),
    ("items", "*", "metadata", "labels", labels.PRODUCT),
    ("items", "*", "metadata", "labels", labels.COUNT),
    ("items", "*", "metadata", "labels", "nvidia.com/gpu.clique"),
    ("items", "*", "metadata", "annotations"), ("items", "*", "status"),
    ("items", "*", "status", "allocatable"),
    ("items", "*", "status", "allocatable", labels.GPU_RESOURCE),
    ("items", "*", "status", "allocatable", "cpu"),
    ("items", "*", "status", "allocatable", "memory"),
    ("items", "*", "status", "allocatable", "pods"),
    ("items", "*", "status", "conditions"), ("items", "*", "status", "phase"),
    ("items", "*", "spec"), ("items", "*", "spec", "taints"), ("items", "*", "spec", "nodeName"),
    ("items", "*", "spec", "unschedulable"), ("items", "*", "spec", "containers"),
    ("items", "*", "spec", "containers", 0), ("items", "*", "spec", "containers", 0, "resources"),
    ("items", "*", "spec", "containers", 0, "resources", "limits"),
    ("items", "*", "spec", "containers", 0, "resources", "limits", labels.GPU_RESOURCE),
    ("items", "*", "spec", "containers", 0, "resources", "requests"),
    ("items", "*", "spec", "containers", 0, "resources", "requests", "cpu"),
    ("items", "*", "spec", "containers", 0, "resources", "requests", "memory"),
    ("items", "*", "spec", "initContainers"), ("items", "*", "spec", "tolerations"),
    ("items", "*", "metadata", "annotations", "shorthop.io/gpus"),
)  # fmt: skip
QUANTITIES = (
    "1e999999999", "1e999999", "1e30", "99999999999999999999Ei", "-5", "-1", "0", "abc", "1.5",
    "1Ei", "8E", "9223372036854775808", "4294967296", "2147483648", "²", "0,1,2", "99,0", "-1",
    "0,0", "", "64", "65",
)  # fmt: skip


def _replace(doc: Any, path: tuple[Any, ...], value: Any, pick: int) -> None:
    """Set ``path`` in ``doc`` to ``value`` where the path exists (``*`` picks item ``pick``)."""
    node = doc
    for i, step in enumerate(path):
        last = i == len(path) - 1
        key = step
        if step == "*":
            if not isinstance(node, list) or not node:
                return
            key = pick % len(node)
        if isinstance(node, list):
            if not isinstance(key, int) or key >= len(node):
                return
        elif not isinstance(node, dict):
            return
        if last:
            node[key] = value
            return
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]


@st.composite
def snapshot_files(draw: Any) -> tuple[str, bytes]:
    """``(how it was broken, file bytes)``: a snapshot with garbage in its structure, written as
    YAML or JSON, and/or damaged as text."""
    doc = base_snapshot()
    how: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(SNAPSHOT_TARGETS))
        value = draw(st.one_of(garbage(), st.sampled_from(QUANTITIES)))
        _replace(doc, path, value, draw(st.integers(0, 10)))
        how.append("/".join(map(str, path)))
    form = draw(st.sampled_from(("yaml", "json", "yaml-docs")))
    if form == "json":
        out = json.dumps(doc, indent=draw(st.sampled_from((None, 1))))
    elif form == "yaml-docs" and isinstance(doc.get("items"), list):
        out = yaml.safe_dump_all(doc["items"])
    else:
        out = yaml.safe_dump(doc)
    data = out.encode()
    edit = draw(
        st.sampled_from(
            ("none", "none", "truncate", "insert", "replace", "bytes", "prefix", "huge-int",
             "whole", "indent")
        )
    )  # fmt: skip
    if edit == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif edit == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(text(8)).encode() + data[at:]
    elif edit == "replace":
        at = draw(st.integers(0, max(0, len(data) - 1)))
        data = data[:at] + draw(st.sampled_from((b":", b"{", b"[", b"-", b"'", b'"', b"\t", b"&a", b"*a", b"!!python/object:os.system"))) + data[at + 1 :]  # fmt: skip
    elif edit == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif edit == "prefix":
        data = draw(st.sampled_from((b"\xef\xbb\xbf", b"---\n", b"%YAML 1.1\n---\n", b"...\n"))) + data  # fmt: skip
    elif edit == "huge-int":
        data = data.replace(b"'8'", b"1" + HUGE_DIGITS.encode(), 1).replace(
            b'"8"', b"1" + HUGE_DIGITS.encode(), 1
        )
    elif edit == "whole":
        data = draw(
            st.one_of(
                st.sampled_from(WHOLE_FILES),
                st.binary(max_size=64),
                text(64).map(str.encode),
            )
        )
    elif edit == "indent":
        data = data.replace(b"\n  ", b"\n\t", draw(st.integers(1, 3)))
    how.append(f"{form}/{edit}")
    return ", ".join(how), data


# Files that are not a snapshot at all: ``shorthop plan`` must exit 1 with one line naming the
# file.
NOT_SNAPSHOTS = (
    b"", b"---\n", b"null\n", b"[]", b"{}", b"[1, 2]", b"42", b'"Node"', b"kind: Node\n",
    b"kind: List\n", b"kind: List\nitems: 5\n", b"kind: NodeList\nitems: [5]\n",
    b"kind: List\nitems: [{metadata: {name: n}}]\n",
    b"kind: Node\nmetadata: x\n", b"kind: Pod\nmetadata: {name: p}\n", b"\x00\x01\x02",
    b"kind: Node\nmetadata: {name: [1]}\n", b"kind: Node\nmetadata: {name: 7}\n",
    b"\xff\xfe\x00", b"a: &a [*a]\n",
    b"a: &x [1,1,1,1,1,1,1,1,1,1]\nb: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x,*x]\nc: [*y,*y,*y,*y,*y,*y,*y,*y,*y,*y]\n",
    b"!!python/object/apply:os.system ['true']\n", b"kind: Node\nmetadata: {name: n}\n---\n{{{",
    b'{"kind": "List", "items": [' + b'{"kind": "Node"},' * 3, b'{"kind": 1' + b"0" * 5000 + b"}",
    b"kind: Node\nmetadata: {name: n}\nstatus: {allocatable: {nvidia.com/gpu: 1" + HUGE_DIGITS.encode() + b"}}\n",
    b"[" * 100_000, b"a: " + b"[" * 20_000, b'{"a":' * 50_000,
)  # fmt: skip
# Files that read as a snapshot with no usable GPU node in it (a node without GPUs, taints that
# are not a list): the deployment cannot be placed, so exit 2 with the infeasible plan as JSON
# on stdout and nothing on stderr. (A name that is not a string is not a snapshot: exit 1.)
NOTHING_TO_PLACE_ON = (
    b"kind: Node\nmetadata: {name: n}\n" * 3,
    b"kind: Node\nmetadata: {name: n}\nspec: {taints: 5}\nstatus: {allocatable: {nvidia.com/gpu: 8}}\n",
)  # fmt: skip
WHOLE_FILES = NOT_SNAPSHOTS + NOTHING_TO_PLACE_ON
