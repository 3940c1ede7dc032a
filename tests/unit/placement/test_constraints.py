"""The scheduling rules of a pod template: node selector, required and preferred node affinity,
node name and host ports, case by case as Kubernetes documents them (the API reference of
NodeSelectorTerm/NodeSelectorRequirement, kube-scheduler's NodeAffinity and NodePorts plugins,
the kubelet's admission), and the vectorised table equal to the rule node by node."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from shorthop.errors import SpecError
from shorthop.placement import constraints
from shorthop.placement.constraints import HostPort

from tests import scheduling_check

PATH = "spec.roles[1].template.spec"
H200 = {"nvidia.com/gpu.product": "NVIDIA-H200", "nvidia.com/gpu.memory": "143771"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        found["values"] = list(values)
    return found


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
    }


def term(*expressions: dict[str, Any], fields: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if expressions:
        found["matchExpressions"] = list(expressions)
    if fields:
        found["matchFields"] = list(fields)
    return found


PRODUCT = "nvidia.com/gpu.product"
MEMORY = "nvidia.com/gpu.memory"

# (spec, node labels, node name, admitted)
CASES: list[tuple[str, dict[str, Any], dict[str, str], str, bool]] = [
    ("no rules admit every node", {}, H100, "n1", True),
    ("nodeSelector: the exact value", {"nodeSelector": {PRODUCT: "NVIDIA-H200"}}, H200, "n", True),
    ("nodeSelector: another value", {"nodeSelector": {PRODUCT: "NVIDIA-H200"}}, H100, "n", False),
    ("nodeSelector: the label missing", {"nodeSelector": {"rack": "r1"}}, H200, "n", False),
    ("nodeSelector: values are case-sensitive", {"nodeSelector": {PRODUCT: "nvidia-h200"}}, H200,
     "n", False),
    ("nodeSelector: keys are case-sensitive", {"nodeSelector": {"nvidia.com/GPU.product":
                                                               "NVIDIA-H200"}}, H200, "n", False),
    ("nodeSelector: every pair must hold", {"nodeSelector": {PRODUCT: "NVIDIA-H200", MEMORY: "1"}},
     H200, "n", False),
    ("nodeSelector AND affinity: both hold",
     {"nodeSelector": {PRODUCT: "NVIDIA-H200"}, **required(term(expr(MEMORY, "Gt", "100000")))},
     H200, "n", True),
    ("nodeSelector AND affinity: the selector fails",
     {"nodeSelector": {PRODUCT: "NVIDIA-H100-80GB-HBM3"},
      **required(term(expr(MEMORY, "Gt", "100000")))}, H200, "n", False),
    ("nodeSelector AND affinity: the affinity fails",
     {"nodeSelector": {PRODUCT: "NVIDIA-H200"}, **required(term(expr(MEMORY, "Lt", "100000")))},
     H200, "n", False),
    ("terms are ORed: the second matches",
     required(term(expr(PRODUCT, "In", "NVIDIA-GB200")), term(expr(PRODUCT, "In", "NVIDIA-H200"))),
     H200, "n", True),
    ("terms are ORed: none matches",
     required(term(expr(PRODUCT, "In", "NVIDIA-GB200")), term(expr(PRODUCT, "In", "NVIDIA-L40S"))),
     H200, "n", False),
    ("expressions are ANDed: one fails",
     required(term(expr(PRODUCT, "In", "NVIDIA-H200"), expr(MEMORY, "Lt", "100000"))),
     H200, "n", False),
    ("a term with no requirements matches no node", required(term()), H200, "n", False),
    ("an empty term beside a matching one", required(term(), term(expr(PRODUCT, "Exists"))),
     H200, "n", True),
    ("In: one of the values", required(term(expr(PRODUCT, "In", "A", "NVIDIA-H200", "B"))),
     H200, "n", True),
    ("In: none of the values", required(term(expr(PRODUCT, "In", "A", "B"))), H200, "n", False),
    ("In: the label missing", required(term(expr("rack", "In", "r1"))), H200, "n", False),
    ("NotIn: the label missing matches", required(term(expr("rack", "NotIn", "r1"))), H200, "n",
     True),
    ("NotIn: one of the values", required(term(expr(PRODUCT, "NotIn", "NVIDIA-H200"))), H200,
     "n", False),
    ("NotIn: another value", required(term(expr(PRODUCT, "NotIn", "NVIDIA-H100"))), H200, "n",
     True),
    ("Exists: present", required(term(expr(PRODUCT, "Exists"))), H200, "n", True),
    ("Exists: present with an empty value", required(term(expr("flag", "Exists"))),
     {"flag": ""}, "n", True),
    ("Exists: missing", required(term(expr("rack", "Exists"))), H200, "n", False),
    ("DoesNotExist: missing matches", required(term(expr("rack", "DoesNotExist"))), H200, "n",
     True),
    ("DoesNotExist: present", required(term(expr(PRODUCT, "DoesNotExist"))), H200, "n", False),
    ("Gt: larger", required(term(expr(MEMORY, "Gt", "100000"))), H200, "n", True),
    ("Gt: equal is not greater", required(term(expr(MEMORY, "Gt", "143771"))), H200, "n", False),
    ("Lt: smaller", required(term(expr(MEMORY, "Lt", "100000"))), H100, "n", True),
    ("Gt: a signed value", required(term(expr("t", "Gt", "-5"))), {"t": "+3"}, "n", True),
    ("Gt: leading zeros are a number", required(term(expr("t", "Gt", "6"))), {"t": "007"}, "n",
     True),
    ("Gt: a label that is not an integer", required(term(expr("t", "Gt", "1"))), {"t": "2.5"},
     "n", False),
    ("Gt: the label missing", required(term(expr("t", "Gt", "1"))), H200, "n", False),
    ("Gt: a value that is not an integer breaks its term",
     required(term(expr(MEMORY, "Gt", "1e5"))), H200, "n", False),
    ("a broken term beside a matching one",
     required(term(expr(MEMORY, "Lt", "abc")), term(expr(PRODUCT, "Exists"))), H200, "n", True),
    ("matchFields In: the node's name", required(term(fields=(expr("metadata.name", "In", "n1"),))),
     H200, "n1", True),
    ("matchFields In: another node", required(term(fields=(expr("metadata.name", "In", "n1"),))),
     H200, "n2", False),
    ("matchFields NotIn: another node",
     required(term(fields=(expr("metadata.name", "NotIn", "n1"),))), H200, "n2", True),
    ("matchFields AND matchExpressions in one term",
     required(term(expr(PRODUCT, "In", "NVIDIA-H100"), fields=(expr("metadata.name", "In", "n1"),))),
     H200, "n1", False),
    ("nodeName: that node", {"nodeName": "n1"}, H200, "n1", True),
    ("nodeName: another node", {"nodeName": "n1"}, H200, "n2", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "node_labels", "name", "admitted"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_required_rules(
    spec: dict[str, Any], node_labels: dict[str, str], name: str, admitted: bool
) -> None:
    rules = constraints.parse({"containers": [{}], **spec}, PATH)
    assert rules.admits(node_labels, name) is admitted
    table = constraints.LabelTable([name, "other"], [node_labels, {}])
    mask = np.ones(2, dtype=np.bool_)
    if rules.node_name is not None:
        mask &= table.node_name(rules.node_name)
    mask &= table.selector(rules.node_selector)
    if rules.required is not None:
        mask &= table.required(rules.required)
    assert bool(mask[0]) is admitted
    # The tests' own reading (used by the checks at every pod state) agrees on every case.
    assert scheduling_check.admits({"containers": [{}], **spec}, node_labels, name) is admitted


# (spec, field path, words in the message)
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    ("operators are case-sensitive", required(term(expr(PRODUCT, "in", "x"))),
     ".nodeSelectorTerms[0].matchExpressions[0].operator", "'in' is not one of In"),
    ("an unknown operator", required(term(expr(PRODUCT, "Equals", "x"))),
     ".matchExpressions[0].operator", "Equals"),
    ("no terms", required(), ".requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
     "at least one node selector term"),
    ("In without values", required(term(expr(PRODUCT, "In"))), ".matchExpressions[0].values",
     "at least one value"),
    ("NotIn without values", required(term(expr(PRODUCT, "NotIn"))), ".values", "at least one"),
    ("Exists with values", required(term(expr(PRODUCT, "Exists", "x"))), ".values",
     "must be empty"),
    ("Gt with two values", required(term(expr(MEMORY, "Gt", "1", "2"))), ".values",
     "exactly one integer"),
    ("a value that is a number", required(term({"key": "a", "operator": "In", "values": [1]})),
     ".values[0]", "quote it"),
    ("a key that is no label key", required(term(expr("-bad-", "Exists"))), ".key",
     "is not a label key"),
    ("matchFields on another field",
     required(term(fields=(expr("metadata.labels", "In", "x"),))), ".matchFields[0].key",
     "only metadata.name"),
    ("matchFields with two names",
     required(term(fields=(expr("metadata.name", "In", "a", "b"),))), ".matchFields[0].values",
     "exactly one node name"),
    ("matchFields with Exists", required(term(fields=(expr("metadata.name", "Exists"),))),
     ".matchFields[0].operator", "In, NotIn"),
    ("a preferred weight of 0",
     {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 0, "preference": term(expr(PRODUCT, "Exists"))}]}}},
     ".preferredDuringSchedulingIgnoredDuringExecution[0].weight", "from 1 to 100"),
    ("a preferred weight of 101",
     {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 101, "preference": term(expr(PRODUCT, "Exists"))}]}}}, ".weight", "1 to 100"),
    ("a preferred Gt that is not an integer",
     {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 5, "preference": term(expr(MEMORY, "Gt", "lots"))}]}}},
     ".preference.matchExpressions[0].values[0]", "integer"),
    ("a nodeSelector that is a list", {"nodeSelector": ["a=b"]}, ".nodeSelector", "mapping"),
    ("a nodeSelector value that is a number", {"nodeSelector": {"gpus": 8}},
     ".nodeSelector[gpus]", "string"),
    ("a nodeSelector key that is no label key", {"nodeSelector": {"a b": "c"}}, ".nodeSelector",
     "is not a label key"),
    ("a nodeName that is a number", {"nodeName": 7}, ".nodeName", "node name"),
    ("a nodeSelector value that is no label value", {"nodeSelector": {"gpu": "H200 SXM"}},
     ".nodeSelector[gpu]", "is not a label value"),
    ("a key with an upper-case prefix", {"nodeSelector": {"NVIDIA.com/gpu": "x"}},
     ".nodeSelector", "invalid prefix"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_what_the_api_server_refuses_is_a_spec_error_naming_the_field(
    spec: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as refused:
        constraints.parse({"containers": [{}], **spec}, PATH)
    assert refused.value.field.startswith(PATH)
    assert refused.value.field.endswith(field), refused.value.field
    assert words in refused.value.problem


def test_preferred_terms_score_the_sum_of_the_weights_they_match() -> None:
    spec = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 60, "preference": term(expr(PRODUCT, "In", "NVIDIA-H200"))},
                    {"weight": 30, "preference": term(expr(MEMORY, "Gt", "100000"))},
                    {"weight": 7, "preference": term(expr("rack", "DoesNotExist"))},
                    {"weight": 100, "preference": term()},  # an empty term matches nothing
                ]
            }
        }
    }
    rules = constraints.parse({"containers": [{}], **spec}, PATH)
    assert rules.preference(H200, "a") == 97
    assert rules.preference(H100, "b") == 7
    assert rules.preference({**H100, "rack": "r1"}, "c") == 0
    assert rules.admits(H100, "b"), "preferences never filter"
    table = constraints.LabelTable(["a", "b", "c"], [H200, H100, {**H100, "rack": "r1"}])
    assert table.preference(rules.preferred).tolist() == [97, 7, 0]


# -- host ports ----------------------------------------------------------------------------------

CONFLICTS = [
    ("the same port, protocol and any address", HostPort(8000), HostPort(8000), True),
    ("another port", HostPort(8000), HostPort(8001), False),
    ("another protocol", HostPort(53, "UDP"), HostPort(53, "TCP"), False),
    ("0.0.0.0 against one address", HostPort(80), HostPort(80, ip="10.0.0.1"), True),
    ("one address against 0.0.0.0", HostPort(80, ip="10.0.0.1"), HostPort(80), True),
    ("the same address", HostPort(80, ip="10.0.0.1"), HostPort(80, ip="10.0.0.1"), True),
    ("two different addresses", HostPort(80, ip="10.0.0.1"), HostPort(80, ip="10.0.0.2"), False),
    ("SCTP and SCTP", HostPort(9, "SCTP"), HostPort(9, "SCTP"), True),
]


@pytest.mark.parametrize(
    ("a", "b", "clash"), [c[1:] for c in CONFLICTS], ids=[c[0] for c in CONFLICTS]
)
def test_host_port_conflicts(a: HostPort, b: HostPort, clash: bool) -> None:
    assert a.conflicts(b) is clash
    assert b.conflicts(a) is clash


def _ports(**spec: Any) -> tuple[HostPort, ...]:
    rules = constraints.parse(spec, PATH)
    assert rules.host_ports == constraints.host_ports_of(spec), "template and pod read alike"
    return rules.host_ports


def test_host_ports_of_containers_and_sidecars_with_defaults() -> None:
    assert _ports(
        containers=[
            {"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 9090}]},
            {"ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP",
                        "hostIP": "10.0.0.1"}]},
        ],
        initContainers=[
            {"restartPolicy": "Always", "ports": [{"containerPort": 1, "hostPort": 7000}]},
            {"ports": [{"containerPort": 1, "hostPort": 7001}]},  # runs before, binds nothing
        ],
    ) == (HostPort(53, "UDP", "10.0.0.1"), HostPort(7000), HostPort(8080))  # fmt: skip


def test_with_host_network_every_container_port_is_a_host_port() -> None:
    assert _ports(hostNetwork=True, containers=[{"ports": [{"containerPort": 8000}]}]) == (
        HostPort(8000),
    )


@pytest.mark.parametrize(
    ("ports", "field", "words"),
    [
        ([{"hostPort": 70000}], ".containers[0].ports[0].hostPort", "1-65535"),
        ([{"hostPort": "80"}], ".containers[0].ports[0].hostPort", "1-65535"),
        ([{"hostPort": 80, "protocol": "tcp"}], ".containers[0].ports[0].protocol", "TCP, UDP"),
        ([{"hostPort": 80}, {"hostPort": 80}], ".containers[0].ports[1].hostPort", "used twice"),
    ],
    ids=["out of range", "a string", "lower-case protocol", "twice in one pod"],
)
def test_host_ports_the_api_server_refuses(ports: list[Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as refused:
        constraints.parse({"containers": [{"ports": ports}]}, PATH)
    assert refused.value.field == PATH + field
    assert words in refused.value.problem


# -- the table equals the rule, node by node ------------------------------------------------------

KEYS = ("a", "b", "n")
VALUES = ("x", "y", "1", "20", "-3", "z9", "")  # "-3" is no valid label value, only a Gt/Lt bound
requirements = st.one_of(
    st.builds(
        lambda k, op, vs: {"key": k, "operator": op, "values": vs},
        st.sampled_from(KEYS),
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
    ),
    st.builds(
        lambda k, op: {"key": k, "operator": op},
        st.sampled_from(KEYS),
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
    st.builds(
        lambda k, op, v: {"key": k, "operator": op, "values": [v]},
        st.sampled_from(KEYS),
        st.sampled_from(["Gt", "Lt"]),
        st.sampled_from(["0", "5", "-4", "x"]),
    ),
)
node_label_sets = st.lists(
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3),
    min_size=1,
    max_size=6,
)


@given(
    node_label_sets,
    st.lists(st.lists(requirements, max_size=3), min_size=1, max_size=3),
    st.dictionaries(
        st.sampled_from(KEYS), st.sampled_from([v for v in VALUES if v != "-3"]), max_size=2
    ),
)
def test_the_label_table_agrees_with_the_rule_node_by_node(
    nodes: list[dict[str, str]], terms: list[list[dict[str, Any]]], selector: dict[str, str]
) -> None:
    spec = {
        "containers": [{}],
        "nodeSelector": selector,
        **required(*({"matchExpressions": t} for t in terms)),
        "affinity": {
            "nodeAffinity": {
                **required(*({"matchExpressions": t} for t in terms))["affinity"]["nodeAffinity"],
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10 + i, "preference": {"matchExpressions": t}}
                    for i, t in enumerate(terms)
                    if all(e["values"][0] != "x" for e in t if e["operator"] in ("Gt", "Lt"))
                ],
            }
        },
    }
    rules = constraints.parse(spec, PATH)
    names = [f"n{i}" for i in range(len(nodes))]
    table = constraints.LabelTable(names, nodes)
    assert rules.required is not None
    mask = table.selector(rules.node_selector) & table.required(rules.required)
    assert mask.tolist() == [
        rules.admits(labels, n) for labels, n in zip(nodes, names, strict=True)
    ]
    assert table.preference(rules.preferred).tolist() == [
        rules.preference(labels, n) for labels, n in zip(nodes, names, strict=True)
    ]
