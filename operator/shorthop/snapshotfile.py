"""Read a cluster snapshot file: the Nodes and Pods (and ResourceSlices, ResourceClaims and
RuntimeClasses) that ``kubectl`` prints.

Accepts what ``kubectl get nodes,pods -A -o yaml`` (or ``-o json``, or with
``resourceslices,resourceclaims,runtimeclasses`` added) writes, a ``List`` with ``items``; a
``NodeList``/``PodList``/``ResourceSliceList``... as the API returns it (items may omit
``kind``); or multi-document YAML of single objects. ResourceSlices and ResourceClaims of any
served version of ``resource.k8s.io`` (``v1``, ``v1beta2``, ``v1beta1``) are read, and one whose
fields shorthop reads have the wrong shape is an error naming the object and the field.
RuntimeClasses (``node.k8s.io``) are kept for the templates that name them. Other kinds are
skipped. Every problem
becomes a :class:`~shorthop.errors.SnapshotError` whose one-line message names the file, what is
wrong and how to fix it; no traceback reaches the user. Callers: ``shorthop topology`` and
``shorthop plan``. Reads the file and nothing else; builds no snapshot itself (that is
``placement.snapshot.build``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shorthop.errors import DeviceError, SnapshotError
from shorthop.placement import devices
from shorthop.topology import slices

__all__ = ["ClusterObjects", "load_cluster", "load_objects", "parse_cluster", "parse_objects"]

CAPTURE_HINT = "capture it with `kubectl get nodes,pods -A -o yaml > FILE`"
DRA_GROUP = "resource.k8s.io"
UNCHANGED_HINT = (
    "use the unchanged output of `kubectl get nodes,pods,resourceslices,resourceclaims -A -o yaml`"
)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ClusterObjects:
    """The objects of a snapshot file, by kind, in file order."""

    nodes: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    resource_slices: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    runtime_classes: list[dict[str, Any]] = field(default_factory=list)


def load_objects(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Node and Pod objects of a snapshot file (see :func:`load_cluster`)."""
    found = load_cluster(path)
    return found.nodes, found.pods


def load_cluster(path: str) -> ClusterObjects:
    """Read the Node, Pod, ResourceSlice, ResourceClaim and RuntimeClass objects from a snapshot
    file.

    Parameters
    ----------
    path : str
        A YAML or JSON file, or ``-`` for standard input.

    Returns
    -------
    ClusterObjects
        The objects in file order, as plain mappings with the API's camelCase keys.

    Raises
    ------
    SnapshotError
        The file is missing or unreadable, is not YAML/JSON, holds something other than
        Kubernetes objects, holds a List without ``items``, holds no Node at all, or holds a
        ResourceSlice or ResourceClaim with a field of the wrong shape.
    """
    if path == "-":
        return parse_cluster(sys.stdin.read(), "<stdin>")
    file = Path(path)
    if not file.exists():
        raise SnapshotError(f"{path}: no such file; {CAPTURE_HINT}")
    if file.is_dir():
        raise SnapshotError(f"{path}: is a directory, not a snapshot file; {CAPTURE_HINT}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{path}: not UTF-8 text (byte {exc.start}); {CAPTURE_HINT}") from None
    except OSError as exc:
        raise SnapshotError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the path and that this user "
            f"may read it, or pipe the snapshot in with --cluster -"
        ) from None
    return parse_cluster(text, path)


def parse_objects(text: str, source: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split snapshot text into Nodes and Pods (see :func:`parse_cluster`)."""
    found = parse_cluster(text, source)
    return found.nodes, found.pods


def parse_cluster(text: str, source: str) -> ClusterObjects:
    """Split snapshot text into Nodes, Pods, ResourceSlices, ResourceClaims and RuntimeClasses;
    ``source`` names it in error messages.

    Parameters
    ----------
    text : str
        YAML (one or more documents) or JSON.
    source : str
        The file name to put in messages.

    Returns
    -------
    ClusterObjects

    Raises
    ------
    SnapshotError
        As :func:`load_cluster`, less the file-system cases.

    Examples
    --------
    >>> nodes, pods = parse_objects("kind: Node\\nmetadata: {name: n1}\\n", "x.yaml")
    >>> [n["metadata"]["name"] for n in nodes], pods
    (['n1'], [])
    """
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    dra: dict[str, list[dict[str, Any]]] = {"ResourceSlice": [], "ResourceClaim": []}
    runtime_classes: list[dict[str, Any]] = []
    documents = 0
    for number, document in enumerate(_documents(text, source), start=1):
        documents += 1
        for obj in _objects(document, number, source):
            kind = obj.get("kind")
            if kind == "Node":
                nodes.append(obj)
            elif kind == "Pod":
                pods.append(obj)
            elif kind == "RuntimeClass":
                runtime_classes.append(obj)
            elif isinstance(kind, str) and kind in dra and _dra_version(obj):
                _check_dra(obj, str(kind), len(dra[str(kind)]) + 1, source)
                dra[str(kind)].append(obj)
    if documents == 0:
        raise SnapshotError(f"{source}: is empty; {CAPTURE_HINT}")
    if not nodes:
        raise SnapshotError(
            f"{source}: contains no Node objects (found {len(pods)} Pods); "
            "include the nodes: `kubectl get nodes,pods -A -o yaml`"
        )
    for kind, objects in (("Node", nodes), ("Pod", pods), ("RuntimeClass", runtime_classes)):
        for i, obj in enumerate(objects):
            _check_names(obj, f"{source}: {kind} #{i + 1}", namespaced=kind == "Pod")
    return ClusterObjects(nodes, pods, dra["ResourceSlice"], dra["ResourceClaim"], runtime_classes)


def _dra_version(obj: Mapping[str, Any]) -> bool:
    """A ResourceSlice/ResourceClaim of resource.k8s.io (items of a List may omit apiVersion)."""
    version = obj.get("apiVersion")
    return version is None or (isinstance(version, str) and version.startswith(f"{DRA_GROUP}/"))


def _check_dra(obj: Mapping[str, Any], kind: str, number: int, source: str) -> None:
    """Read the object as the snapshot builder will, so that a malformed one stops here with
    its name and field rather than being skipped."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    label = f"{kind} {name}" if isinstance(name, str) and name else f"{kind} #{number}"
    if isinstance(meta, Mapping) and isinstance(meta.get("namespace"), str) and name:
        label = f"{kind} {meta['namespace']}/{name}"
    try:
        if kind == "ResourceSlice":
            slices.read_slice(obj)
        else:
            devices.read_claim(obj)
    except DeviceError as exc:
        raise SnapshotError(f"{source}: {label}: {exc}; {UNCHANGED_HINT}") from None


def _check_names(obj: Mapping[str, Any], where: str, *, namespaced: bool) -> None:
    """A name (and a Pod's namespace) must be a non-empty string, as the API server writes it:
    an object named by a number or a list would otherwise be dropped without a word."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        raise SnapshotError(f"{where} has no metadata.name; use the unchanged output of kubectl")
    fields = ("name", "namespace") if namespaced else ("name",)
    for key in fields:
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise SnapshotError(
                f"{where}: metadata.{key} must be a non-empty string, not "
                f"{type(value).__name__} {value!r:.40}; use the unchanged output of kubectl"
            )


def _documents(text: str, source: str) -> Iterator[Any]:
    """The non-empty top-level documents, JSON or YAML."""
    if text.lstrip().startswith(("{", "[")):
        try:
            yield json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(
                f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                f"{UNCHANGED_HINT}"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise SnapshotError(
                f"{source}: not usable JSON ({_value_problem(exc)}); {UNCHANGED_HINT}"
            ) from None
        return
    try:
        for document in yaml.load_all(text, Loader=_LOADER):
            if document is not None:
                yield document
    except yaml.YAMLError as exc:
        raise SnapshotError(f"{source}: {_yaml_problem(exc)}; {UNCHANGED_HINT}") from None
    except (ValueError, RecursionError) as exc:
        # Raised while constructing values, e.g. an integer of more than 4300 digits.
        raise SnapshotError(
            f"{source}: not usable YAML ({_value_problem(exc)}); {UNCHANGED_HINT}"
        ) from None


def _value_problem(exc: ValueError | RecursionError) -> str:
    """What went wrong building a value (Python's own words for a ValueError, e.g. an integer
    of more than 4,300 digits)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return " ".join(str(exc).split())[:200]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    problem = " ".join(str(problem).split())
    if mark is not None:
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"not valid YAML: {problem}"


def _objects(document: Any, number: int, source: str) -> Iterator[dict[str, Any]]:
    """The objects of one document: itself, or the items of a List."""
    where = f"{source}: document {number}"
    if isinstance(document, list):
        # A bare JSON array of objects: treat it like a List's items.
        for i, item in enumerate(document):
            yield _object(item, f"{where}, item {i + 1}", None)
        return
    if not isinstance(document, Mapping):
        raise SnapshotError(
            f"{where} is a {type(document).__name__}, not a Kubernetes object; {CAPTURE_HINT}"
        )
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise SnapshotError(f"{where} is not a Kubernetes object (no `kind`); {CAPTURE_HINT}")
    if not kind.endswith("List"):
        yield dict(document)
        return
    items = document.get("items")
    if not isinstance(items, list):
        raise SnapshotError(
            f"{where} is a {kind} without `items`; "
            "save the whole output of `kubectl get nodes,pods -A -o yaml`"
        )
    # NodeList/PodList items from the API carry no kind of their own.
    implied = kind[: -len("List")] or None
    for i, item in enumerate(items):
        yield _object(item, f"{where}, item {i + 1}", implied)


def _object(item: Any, where: str, implied: str | None) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise SnapshotError(
            f"{where} is a {type(item).__name__}, not a Kubernetes object; {CAPTURE_HINT}"
        )
    obj = dict(item)
    if not obj.get("kind"):
        if implied is None:
            raise SnapshotError(f"{where} is not a Kubernetes object (no `kind`); {CAPTURE_HINT}")
        obj["kind"] = implied
    return obj
