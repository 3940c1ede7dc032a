"""What must hold after every fault, read straight from the API server (raw JSON, no models).

* **no double booking**: no (node, GPU index) in the ``shorthop.io/gpus`` annotations of two
  active pods, and every index below the node's allocatable GPUs;
* **no overcommit**: no node with more ``nvidia.com/gpu`` requested by its active pods (anyone's)
  than it has allocatable (at every watched state, while two schedulers race:
  ``tests/gpu_ledger.py``);
* **no orphans**: every pod labelled ``shorthop.io/deployment`` is owned by an
  InferenceDeployment that exists (same uid);
* **no duplicates**: a deployment's pods are exactly its desired (role, replica, pod) set, one pod
  each, named as shorthop names them;
* **status matches reality**: ``status.replicas`` lists exactly the pods, nodes and GPUs that exist.

Each check returns a list of human-readable violations (empty: it holds).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

# The pod and node arithmetic is shared with the watch-driven check of tests/gpu_ledger.py.
from tests.gpu_ledger import GPU, GPU_ANNOTATION, active, allocatable, gpu_indices, gpu_request  # noqa: F401

DEPLOYMENT_LABEL = "shorthop.io/deployment"
GROUP, VERSION, PLURAL = "shorthop.io", "v1alpha1", "inferencedeployments"


def _json(response: Any) -> Any:
    return json.loads(response.data)


def list_pods(core: client.CoreV1Api, namespace: str | None = None, selector: str = "") -> list:
    if namespace:
        response = core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
    else:
        response = core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
    items: list[dict[str, Any]] = _json(response)["items"]
    return items


def list_nodes(core: client.CoreV1Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _json(core.list_node(_preload_content=False))["items"]
    return items


def list_deployments(api: client.ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)
    if namespace:
        body = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    else:
        body = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    return list(body.get("items", []))


def get_deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(body)


def node_violations(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Double booking and overcommit over the given nodes (pods elsewhere are ignored)."""
    capacity = {n["metadata"]["name"]: allocatable(n) for n in nodes}
    requested: dict[str, int] = defaultdict(int)
    owners: dict[tuple[str, int], str] = {}
    out: list[str] = []
    for pod in pods:
        if not active(pod):
            continue
        node = pod["spec"]["nodeName"]
        if node not in capacity:
            continue
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        requested[node] += gpu_request(pod)
        for gpu in gpu_indices(pod) or []:
            if not 0 <= gpu < capacity[node]:
                out.append(f"{name}: GPU {gpu} does not exist on {node} ({capacity[node]} GPUs)")
            other = owners.setdefault((node, gpu), name)
            if other != name:
                out.append(f"GPU {gpu} of {node} double-booked by {other} and {name}")
    for node, count in requested.items():
        if count > capacity[node]:
            out.append(f"{node}: {count} GPUs requested, {capacity[node]} allocatable")
    return out


def orphans(
    pods: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Pods labelled as shorthop's whose owner does not exist (any more)."""
    uids = {d["metadata"]["uid"] for d in deployments}
    out = []
    for pod in pods:
        meta = pod["metadata"]
        if DEPLOYMENT_LABEL not in (meta.get("labels") or {}):
            continue
        owners = [
            o for o in meta.get("ownerReferences") or [] if o.get("kind") == "InferenceDeployment"
        ]
        if not owners or owners[0].get("uid") not in uids:
            out.append(f"{meta['namespace']}/{meta['name']} has no live owner")
    return out


@dataclass(frozen=True)
class RoleShape:
    name: str
    replicas: int
    pods_per_replica: int


def shapes(body: Mapping[str, Any]) -> list[RoleShape]:
    """The desired (role, replicas, pods per replica) of an InferenceDeployment body."""
    out = []
    for role in body["spec"]["roles"]:
        per_pod = role.get("gpusPerPod") or role["gpusPerReplica"]
        out.append(RoleShape(role["name"], role["replicas"], role["gpusPerReplica"] // per_pod))
    return out


def deployment_violations(
    body: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *, running: bool = True
) -> list[str]:
    """Duplicates, missing or extra pods, ownership and status-vs-pods of one deployment."""
    meta = body["metadata"]
    name, uid = meta["name"], meta["uid"]
    status = body.get("status") or {}
    out: list[str] = []
    if running and status.get("phase") != "Running":
        out.append(f"{name}: phase {status.get('phase')!r}, not Running ({status.get('message')})")
    desired = {
        (r.name, rid, p)
        for r in shapes(body)
        for rid in range(r.replicas)
        for p in range(r.pods_per_replica)
    }
    mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(DEPLOYMENT_LABEL) == name]
    seen: dict[tuple[str, int, int], str] = {}
    for pod in mine:
        pmeta = pod["metadata"]
        labels = pmeta.get("labels") or {}
        if pmeta.get("deletionTimestamp"):
            out.append(f"{pmeta['name']}: still terminating")
            continue
        try:
            key = (
                labels["shorthop.io/role"],
                int(labels["shorthop.io/replica"]),
                int(labels["shorthop.io/pod"]),
            )
        except (KeyError, ValueError):
            out.append(f"{pmeta['name']}: role/replica/pod labels missing or malformed")
            continue
        expected_name = f"{name}-{key[0]}-{key[1]}-{key[2]}"
        if pmeta["name"] != expected_name:
            out.append(f"{pmeta['name']}: labels say {expected_name}")
        if key in seen:
            out.append(f"duplicate pods for {key}: {seen[key]} and {pmeta['name']}")
        seen[key] = pmeta["name"]
        owners = [o.get("uid") for o in pmeta.get("ownerReferences") or []]
        if owners != [uid]:
            out.append(f"{pmeta['name']}: owners {owners}, expected [{uid}]")
        if running and not pod["spec"].get("nodeName"):
            out.append(f"{pmeta['name']}: not bound")
    missing = sorted(desired - set(seen))
    extra = sorted(set(seen) - desired)
    if missing:
        out.append(f"{name}: missing pods {missing[:6]}{'...' if len(missing) > 6 else ''}")
    if extra:
        out.append(f"{name}: extra pods {extra[:6]}{'...' if len(extra) > 6 else ''}")
    if running:
        actual = {
            (p["metadata"]["name"], p["spec"].get("nodeName"), tuple(gpu_indices(p) or ()))
            for p in mine
            if not p["metadata"].get("deletionTimestamp")
        }
        reported = {
            (pp.get("name"), pp.get("node"), tuple(pp.get("gpus") or ()))
            for r in status.get("replicas") or []
            for pp in r.get("pods") or []
        }
        if actual != reported:
            only_status = sorted(reported - actual)[:4]
            only_pods = sorted(actual - reported)[:4]
            out.append(f"{name}: status != pods (status only {only_status}; pods only {only_pods})")
        total = len(desired)
        if status.get("ready") != f"{total}/{total}":
            out.append(f"{name}: status.ready {status.get('ready')!r}, expected {total}/{total}")
    return out
