"""Snapshot files: kubectl's List, multi-document YAML, NodeList/PodList and JSON; one-line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from shorthop import snapshotfile
from shorthop.errors import SnapshotError


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}


def write(tmp_path: Path, text: str, name: str = "snap.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]


def test_kubectl_list_splits_nodes_and_pods_and_skips_other_kinds(tmp_path: Path) -> None:
    items = [node("n1"), pod("p1"), SERVICE, node("n2")]
    doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
    nodes, pods = snapshotfile.load_objects(write(tmp_path, yaml.safe_dump(doc)))
    assert (names(nodes), names(pods)) == (["n1", "n2"], ["p1"])


def test_multi_document_yaml_with_empty_documents(tmp_path: Path) -> None:
    text = "---\n" + "\n---\n".join(yaml.safe_dump(o) for o in (node("a"), SERVICE, pod("p")))
    nodes, pods = snapshotfile.load_objects(write(tmp_path, text + "\n---\n"))
    assert (names(nodes), names(pods)) == (["a"], ["p"])


def test_node_list_and_pod_list_items_without_kind(tmp_path: Path) -> None:
    node_list = {"kind": "NodeList", "items": [{"metadata": {"name": "n1"}}]}
    pod_list = {"kind": "PodList", "items": [{"metadata": {"name": "p1"}}]}
    text = yaml.safe_dump(node_list) + "---\n" + yaml.safe_dump(pod_list)
    nodes, pods = snapshotfile.load_objects(write(tmp_path, text))
    assert (names(nodes), names(pods)) == (["n1"], ["p1"])
    assert nodes[0]["kind"] == "Node"
    assert pods[0]["kind"] == "Pod"


def test_json_list(tmp_path: Path) -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [node("n1"), pod("p1")]}
    path = write(tmp_path, json.dumps(doc, indent=4), "snap.json")
    nodes, pods = snapshotfile.load_objects(path)
    assert (names(nodes), names(pods)) == (["n1"], ["p1"])


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(node("n1"))))
    nodes, pods = snapshotfile.load_objects("-")
    assert (names(nodes), pods) == (["n1"], [])


BAD = [
    pytest.param("not: [valid\n  yaml: here", ("not valid YAML", "line "), id="invalid-yaml"),
    pytest.param('{"kind": "List", "items": [}', ("not valid JSON", "line 1"), id="invalid-json"),
    pytest.param("metadata: {name: n1}\n", ("no `kind`",), id="no-kind"),
    pytest.param("- 1\n- 2\n", ("item 1", "not a Kubernetes object"), id="list-of-scalars"),
    pytest.param("just a string\n", ("not a Kubernetes object",), id="scalar"),
    pytest.param("kind: List\nmetadata: {}\n", ("List without `items`",), id="list-no-items"),
    pytest.param("kind: List\nitems: [{metadata: {}}]\n", ("no `kind`",), id="item-no-kind"),
    pytest.param(yaml.safe_dump(pod("p")), ("no Node objects", "found 1 Pods"), id="no-nodes"),
    pytest.param("kind: List\nitems: []\n", ("no Node objects",), id="empty-list"),
    pytest.param("", ("is empty",), id="empty-file"),
    pytest.param("kind: Node\nmetadata: {}\n", ("Node #1 has no metadata.name",), id="no-name"),
    pytest.param(
        "kind: Node\nmetadata: {name: 5}\n",
        ("Node #1: metadata.name must be a non-empty string, not int 5",),
        id="node-name-number",
    ),
    pytest.param(
        "kind: List\nitems:\n- {kind: Node, metadata: {name: n1}}\n"
        "- {kind: Pod, metadata: {name: p, namespace: [a]}}\n",
        ("Pod #1: metadata.namespace must be a non-empty string, not list",),
        id="pod-namespace-list",
    ),
    pytest.param(
        "kind: List\nitems:\n- {kind: Node, metadata: {name: n1}}\n- {kind: Pod, metadata: {}}\n",
        ("Pod #1 has no metadata.name",),
        id="pod-no-name",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_content_is_one_clear_line(tmp_path: Path, text: str, expected: tuple[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SnapshotError) as caught:
        snapshotfile.load_objects(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_yaml_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: List\nitems:\n  - kind: Node\n    metadata: {name: [x}\n")
    with pytest.raises(SnapshotError, match=r"at line 4"):
        snapshotfile.load_objects(path)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(SnapshotError, match=r"no such file; capture it with `kubectl get"):
        snapshotfile.load_objects(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="is a directory"):
        snapshotfile.load_objects(str(tmp_path))


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SnapshotError, match="not UTF-8"):
        snapshotfile.load_objects(str(path))
