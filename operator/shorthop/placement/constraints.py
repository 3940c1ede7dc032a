"""The scheduling rules of a pod template, with the semantics Kubernetes gives them (pure).

A role's pod template may carry what any scheduler must honour: ``nodeSelector``, required and
preferred node affinity (``affinity.nodeAffinity``), ``nodeName``, host ports, tolerations (read by
``occupancy``). :func:`parse` turns them into a frozen :class:`Constraints`, refusing with a
:class:`~shorthop.errors.SpecError` (naming the field) what the API server would refuse when the
pod is created; the matching rules are those of kube-scheduler's NodeAffinity, NodeName and
NodePorts plugins and of the kubelet's admission, which checks the same predicates again:

- ``nodeSelector``: every key must be a label of the node with exactly that value;
- required node affinity: the node selector terms are ORed, the requirements of a term ANDed; a
  term with no requirements matches no node; ``nodeSelector`` and required node affinity must
  *both* hold;
- operators ``In``/``NotIn`` (a value list), ``Exists``/``DoesNotExist`` (no values), ``Gt``/``Lt``
  (one integer value, compared with the label's value read as an integer; a label that is not an
  integer does not match). ``NotIn`` and ``DoesNotExist`` match a node without the label. Keys,
  values and operators are case-sensitive;
- ``matchFields``: only ``metadata.name``, with ``In``/``NotIn`` and exactly one value;
- a ``Gt``/``Lt`` value that is not an integer passes the API server but makes its term match no
  node (kube-scheduler reports the parse error only when no term matches); a preferred term with
  one stops kube-scheduler from scheduling the pod at all, so here it is a ``SpecError``;
- preferred terms score the sum of the weights (1-100) of the terms a node matches;
- host ports (``containers[].ports[].hostPort`` > 0, also of init containers that keep running,
  ``restartPolicy: Always``; with ``hostNetwork`` every container port is a host port): two
  conflict when port and protocol (default TCP) agree and their host IPs are equal or one of them
  is ``0.0.0.0`` (the default).

:class:`LabelTable` evaluates requirements over every node at once (an inverted index per label
key, built on first use), for ``placement.filters`` and the solver.

Callers: ``request`` (templates), ``occupancy`` (host ports of running pods), ``snapshot`` (the
label table), ``filters``. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shorthop.errors import SpecError

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
FIELD_OPERATORS = ("In", "NotIn")
NODE_NAME_FIELD = "metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
ANY_IP = "0.0.0.0"
_INT64 = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.ParseInt(s, 10, 64) accepts (in range)
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def parse_int64(value: str) -> int | None:
    """``value`` as Go's ``strconv.ParseInt(value, 10, 64)`` reads it, or None.

    >>> parse_int64("+42"), parse_int64("007"), parse_int64(" 1"), parse_int64("1_000")
    (42, 7, None, None)
    """
    if not _INT64.fullmatch(value):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid label key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        return f"{key!r} has an invalid prefix (a DNS subdomain before the '/')"
    if not _NAME.fullmatch(name):
        return (
            f"{key!r} is not a label key: at most 63 characters of letters, digits, '-', '_' "
            "and '.', starting and ending with a letter or digit (an optional DNS prefix and '/')"
        )
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` (label) or ``matchFields`` (``field``: the node's name) entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()
    field: bool = False

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        if self.field:
            return (name == self.values[0]) == (self.operator == "In")
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        number = parse_int64(value) if value is not None else None
        bound = parse_int64(self.values[0]) if len(self.values) == 1 else None
        if number is None or bound is None:
            return False
        return number > bound if self.operator == "Gt" else number < bound

    def describe(self) -> str:
        """Kubernetes' selector syntax, e.g. ``gpu.product in (H100,H200)``, ``!gpu.present``."""
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        if self.operator in ("Gt", "Lt"):
            return f"{self.key}{'>' if self.operator == 'Gt' else '<'}{','.join(self.values)}"
        return f"{self.key} {self.operator.lower()} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Term:
    """A node selector term: every requirement must hold. ``broken`` says why it can never
    match (a ``Gt``/``Lt`` value that is not an integer); an empty term never matches either."""

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()
    broken: str | None = None

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return self.expressions + self.fields

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        if self.broken is not None or not self.requirements:
            return False
        return all(r.matches(labels, name) for r in self.requirements)

    def describe(self) -> str:
        if not self.requirements:
            return "(an empty term, which matches no node)"
        return ", ".join(r.describe() for r in self.requirements)


@dataclass(frozen=True, slots=True)
class Preference:
    weight: int
    term: Term


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    """A host port a pod binds: ``ip`` is ``0.0.0.0`` when the pod gives none."""

    port: int
    protocol: str = "TCP"
    ip: str = ANY_IP

    def conflicts(self, other: HostPort) -> bool:
        """Both cannot be bound on one node (the NodePorts plugin's rule).

        >>> HostPort(80).conflicts(HostPort(80, ip="10.0.0.1")), HostPort(80).conflicts(
        ...     HostPort(80, "UDP"))
        (True, False)
        """
        return (
            self.port == other.port
            and self.protocol == other.protocol
            and (self.ip == other.ip or ANY_IP in (self.ip, other.ip))
        )

    def describe(self) -> str:
        where = "" if self.ip == ANY_IP else f" on {self.ip}"
        return f"{self.port}/{self.protocol}{where}"


def ports_conflict(a: Sequence[HostPort], b: Sequence[HostPort]) -> bool:
    return any(x.conflicts(y) for x in a for y in b)


@dataclass(frozen=True, slots=True)
class Constraints:
    """A role's scheduling rules (see the module docstring); ``path`` is its template's
    ``spec`` field path, for messages."""

    node_selector: tuple[tuple[str, str], ...] = ()
    required: tuple[Term, ...] | None = None  # None: no required node affinity
    preferred: tuple[Preference, ...] = ()
    node_name: str | None = None
    host_ports: tuple[HostPort, ...] = ()
    path: str = "spec"

    @property
    def selects(self) -> bool:
        """Some rule reads the node's labels or name."""
        return bool(self.node_selector) or self.required is not None or self.node_name is not None

    def admits(self, labels: Mapping[str, str], name: str) -> bool:
        """The node passes ``nodeName``, ``nodeSelector`` and required node affinity."""
        if self.node_name is not None and name != self.node_name:
            return False
        if any(labels.get(k) != v for k, v in self.node_selector):
            return False
        return self.required is None or any(t.matches(labels, name) for t in self.required)

    def preference(self, labels: Mapping[str, str], name: str) -> int:
        """The sum of the weights of the preferred terms the node matches."""
        return sum(p.weight for p in self.preferred if p.term.matches(labels, name))

    def describe_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.node_selector)

    def describe_required(self) -> str:
        terms = self.required or ()
        if len(terms) == 1:
            return terms[0].describe()
        return " or ".join(f"({t.describe()})" for t in terms)


# -- reading a template -------------------------------------------------------------------------


def _map(value: Any, where: str, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(where, f"must be {what} (a mapping), not {type(value).__name__}")
    return value


def _list(value: Any, where: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(where, f"must be a list of {what}, not {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(_list(value, where, "strings")):
        if not isinstance(v, str):
            raise SpecError(f"{where}[{i}]", f"must be a string, not {v!r} (quote it)")
        out.append(v)
    return tuple(out)


def _requirement(entry: Any, where: str, *, field: bool) -> tuple[Requirement, str | None]:
    """One requirement, and why its term can never match (None when it can)."""
    entry = _map(entry, where, "a requirement with key, operator and values")
    key, operator = entry.get("key"), entry.get("operator")
    values = _strings(entry.get("values"), f"{where}.values")
    if not isinstance(key, str) or not key:
        raise SpecError(f"{where}.key", "is required (a label key)")
    valid = FIELD_OPERATORS if field else OPERATORS
    if operator not in valid:
        raise SpecError(
            f"{where}.operator",
            f"{operator!r} is not one of {', '.join(valid)} (operators are case-sensitive)",
        )
    if field:
        if key != NODE_NAME_FIELD:
            raise SpecError(f"{where}.key", f"{key!r}: matchFields supports only metadata.name")
        if len(values) != 1:
            raise SpecError(f"{where}.values", "must hold exactly one node name for matchFields")
        return Requirement(key, operator, values, field=True), None
    problem = label_key_problem(key)
    if problem:
        raise SpecError(f"{where}.key", problem)
    if operator in ("In", "NotIn") and not values:
        raise SpecError(f"{where}.values", f"must list at least one value for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise SpecError(f"{where}.values", f"must be empty for {operator}")
    broken = None
    if operator in ("Gt", "Lt"):
        if len(values) != 1:
            raise SpecError(f"{where}.values", f"must hold exactly one integer for {operator}")
        if parse_int64(values[0]) is None:
            broken = (
                f"{where}.values[0]: {values[0]!r} is not an integer, so the term matches no node"
            )
    return Requirement(key, operator, values), broken


def _term(entry: Any, where: str) -> Term:
    entry = _map(entry, where, "a node selector term")
    broken: list[str] = []
    parts: list[tuple[Requirement, ...]] = []
    for name, field in (("matchExpressions", False), ("matchFields", True)):
        found = []
        for i, item in enumerate(_list(entry.get(name), f"{where}.{name}", "requirements")):
            requirement, problem = _requirement(item, f"{where}.{name}[{i}]", field=field)
            found.append(requirement)
            if problem:
                broken.append(problem)
        parts.append(tuple(found))
    return Term(parts[0], parts[1], broken[0] if broken else None)


def _node_affinity(
    spec: Mapping[str, Any], path: str
) -> tuple[tuple[Term, ...] | None, tuple[Preference, ...]]:
    where = f"{path}.affinity.nodeAffinity"
    affinity = _map(spec.get("affinity"), f"{path}.affinity", "an affinity")
    node = _map(affinity.get("nodeAffinity"), where, "a node affinity")
    required: tuple[Term, ...] | None = None
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    if node.get(key) is not None:
        selector = _map(node.get(key), f"{where}.{key}", "a node selector")
        at = f"{where}.{key}.nodeSelectorTerms"
        terms = _list(selector.get("nodeSelectorTerms"), at, "node selector terms")
        if not terms:
            raise SpecError(at, "must have at least one node selector term")
        required = tuple(_term(t, f"{at}[{i}]") for i, t in enumerate(terms))
    preferred = []
    key = "preferredDuringSchedulingIgnoredDuringExecution"
    for i, item in enumerate(_list(node.get(key), f"{where}.{key}", "weighted terms")):
        at = f"{where}.{key}[{i}]"
        entry = _map(item, at, "a weighted term (weight, preference)")
        weight = entry.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            raise SpecError(f"{at}.weight", f"must be a whole number from 1 to 100, not {weight!r}")
        term = _term(entry.get("preference"), f"{at}.preference")
        if term.broken is not None:
            # kube-scheduler cannot score such a term and leaves the pod unscheduled.
            raise SpecError(term.broken.partition(":")[0], "must be an integer for Gt or Lt")
        preferred.append(Preference(weight, term))
    return required, tuple(preferred)


def _running_containers(spec: Mapping[str, Any]) -> list[tuple[str, int, Any]]:
    """(list name, index, container) of the containers that run the pod's whole life:
    containers, and init containers with ``restartPolicy: Always`` (sidecars)."""
    out = []
    for kind in ("initContainers", "containers"):
        containers = spec.get(kind)
        for i, c in enumerate(containers if isinstance(containers, list) else []):
            if isinstance(c, Mapping) and (
                kind == "containers" or c.get("restartPolicy") == "Always"
            ):
                out.append((kind, i, c))
    return out


def host_ports_of(spec: Mapping[str, Any]) -> tuple[HostPort, ...]:
    """The host ports a pod (or template) binds, read leniently: malformed entries count as none.

    >>> host_ports_of({"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080},
    ...                                          {"containerPort": 9000}]}]})
    (HostPort(port=8080, protocol='TCP', ip='0.0.0.0'),)
    """
    host_network = spec.get("hostNetwork") is True
    found = []
    for _, _, container in _running_containers(spec):
        ports = container.get("ports")
        for p in ports if isinstance(ports, list) else []:
            if not isinstance(p, Mapping):
                continue
            port = p.get("hostPort") or (p.get("containerPort") if host_network else None)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                continue
            protocol, ip = p.get("protocol") or "TCP", p.get("hostIP") or ANY_IP
            found.append(HostPort(port, str(protocol), str(ip)))
    return tuple(sorted(set(found)))


def _host_ports(spec: Mapping[str, Any], path: str) -> tuple[HostPort, ...]:
    """The template's host ports, checked as the API server checks a pod's."""
    seen: set[HostPort] = set()
    host_network = spec.get("hostNetwork") is True
    for kind, i, container in _running_containers(spec):
        where = f"{path}.{kind}[{i}].ports"
        for j, item in enumerate(_list(container.get("ports"), where, "container ports")):
            at = f"{where}[{j}]"
            p = _map(item, at, "a container port")
            port = p.get("hostPort")
            if port is None and host_network:
                port = p.get("containerPort")
            if port is None or port == 0:
                continue
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise SpecError(f"{at}.hostPort", f"must be a port number 1-65535, not {port!r}")
            protocol = p.get("protocol") or "TCP"
            if protocol not in PROTOCOLS:
                raise SpecError(f"{at}.protocol", f"{protocol!r} is not one of TCP, UDP, SCTP")
            ip = p.get("hostIP") or ANY_IP
            if not isinstance(ip, str):
                raise SpecError(f"{at}.hostIP", f"must be an IP address, not {ip!r}")
            found = HostPort(port, protocol, ip)
            if found in seen:
                raise SpecError(f"{at}.hostPort", f"{found.describe()} is used twice in one pod")
            seen.add(found)
    return tuple(sorted(seen))


def parse(spec: Mapping[str, Any], path: str) -> Constraints:
    """The scheduling rules of a pod template's ``spec`` at field path ``path``.

    Raises
    ------
    SpecError
        For what the API server would refuse in the pod (naming the field), and for a preferred
        term that kube-scheduler could not score.

    Examples
    --------
    >>> c = parse({"nodeSelector": {"gpu": "h200"}, "affinity": {"nodeAffinity": {
    ...     "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    ...         {"matchExpressions": [{"key": "mem", "operator": "Gt", "values": ["100"]}]}]}}}},
    ...     "spec.roles[0].template.spec")
    >>> c.admits({"gpu": "h200", "mem": "141"}, "n1"), c.admits({"gpu": "h200", "mem": "80"}, "n1")
    (True, False)
    """
    selector = _map(spec.get("nodeSelector"), f"{path}.nodeSelector", "label names to values")
    pairs = []
    for key, value in selector.items():
        problem = label_key_problem(str(key))
        if problem:
            raise SpecError(f"{path}.nodeSelector", problem)
        if not isinstance(value, str):
            raise SpecError(f"{path}.nodeSelector[{key}]", f"must be a string, not {value!r}")
        if not _VALUE.fullmatch(value):
            raise SpecError(
                f"{path}.nodeSelector[{key}]",
                f"{value!r} is not a label value: at most 63 characters of letters, digits, '-', "
                "'_' and '.', starting and ending with a letter or digit",
            )
        pairs.append((str(key), value))
    node_name = spec.get("nodeName")
    if node_name is not None and not (isinstance(node_name, str) and node_name):
        raise SpecError(f"{path}.nodeName", f"must be a node name, not {node_name!r}")
    required, preferred = _node_affinity(spec, path)
    return Constraints(
        node_selector=tuple(sorted(pairs)),
        required=required,
        preferred=preferred,
        node_name=node_name or None,
        host_ports=_host_ports(spec, path),
        path=path,
    )


# -- every node at once -------------------------------------------------------------------------


class LabelTable:
    """Node labels by row (``None`` where a row holds no node), with an inverted index per label
    key built on first use: ``{value: rows}``. Shared read-only by every snapshot frozen while no
    node changed; the lazily filled index is the only mutable part (filling it twice is
    harmless)."""

    def __init__(self, names: Sequence[str], labels: Sequence[Mapping[str, str] | None]) -> None:
        self.names = tuple(names)
        self.labels = tuple(labels)
        self._by_key: dict[str, dict[str, NDArray[np.intp]]] = {}
        self._row_of = {name: row for row, name in enumerate(self.names) if labels[row] is not None}

    def __len__(self) -> int:
        return len(self.labels)

    def of(self, row: int) -> Mapping[str, str]:
        found = self.labels[row] if row < len(self.labels) else None
        return found if found is not None else {}

    def values(self, key: str) -> dict[str, NDArray[np.intp]]:
        """Rows per value of label ``key``."""
        found = self._by_key.get(key)
        if found is None:
            rows: dict[str, list[int]] = {}
            for row, labels in enumerate(self.labels):
                value = labels.get(key) if labels is not None else None
                if value is not None:
                    rows.setdefault(value, []).append(row)
            found = {v: np.array(r, dtype=np.intp) for v, r in rows.items()}
            self._by_key[key] = found
        return found

    def _rows(self, rows: Sequence[NDArray[np.intp]]) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.labels), dtype=np.bool_)
        for r in rows:
            mask[r] = True
        return mask

    def requirement(self, req: Requirement) -> NDArray[np.bool_]:
        """Rows whose node meets ``req``."""
        if req.field:
            row = self._row_of.get(req.values[0])
            mask = self._rows([np.array([row], dtype=np.intp)] if row is not None else [])
            return mask if req.operator == "In" else ~mask
        by_value = self.values(req.key)
        if req.operator in ("In", "NotIn"):
            mask = self._rows([by_value[v] for v in set(req.values) if v in by_value])
            return mask if req.operator == "In" else ~mask
        if req.operator in ("Exists", "DoesNotExist"):
            mask = self._rows(list(by_value.values()))
            return mask if req.operator == "Exists" else ~mask
        return self._rows([rows for v, rows in by_value.items() if req.matches({req.key: v}, "")])

    def term(self, term: Term) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.labels), dtype=np.bool_)
        if term.broken is not None or not term.requirements:
            return mask
        mask[:] = True
        for req in term.requirements:
            mask &= self.requirement(req)
        return mask

    def selector(self, pairs: Sequence[tuple[str, str]]) -> NDArray[np.bool_]:
        mask = np.ones(len(self.labels), dtype=np.bool_)
        for key, value in pairs:
            mask &= self.requirement(Requirement(key, "In", (value,)))
        return mask

    def required(self, terms: Sequence[Term]) -> NDArray[np.bool_]:
        mask = np.zeros(len(self.labels), dtype=np.bool_)
        for term in terms:
            mask |= self.term(term)
        return mask

    def node_name(self, name: str) -> NDArray[np.bool_]:
        return self.requirement(Requirement(NODE_NAME_FIELD, "In", (name,), field=True))

    def preference(self, preferred: Sequence[Preference]) -> NDArray[np.int64]:
        score = np.zeros(len(self.labels), dtype=np.int64)
        for p in preferred:
            score += p.weight * self.term(p.term)
        return score
