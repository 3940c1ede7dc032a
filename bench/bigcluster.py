"""Node and Pod objects of a large cluster as its API server would send them, rendered from
templates (the footprint benchmark serves 100,000 pods; see ``bench/loopback_api.py``).

Objects are as heavy as real ones, because their size is what a list and a watch cost: each
carries ``managedFields`` (kubelet, controllers), a Pod its volumes, environment, probes and
container statuses, a Node its conditions with heartbeat times, addresses, system info and the
list of images on it. Per node there are daemon pods (networking, monitoring, the GPU operator's
agents; no GPUs) and GPU job pods that take ``occupancy`` of its GPUs, as ``fake.background_pods``
sizes them (1, 2, 4 or 8 GPUs).

Rendering is string templating of pre-encoded JSON (``Template``): a page of 500 pods costs
milliseconds, so the benchmark measures the operator, not the server. Deterministic per seed.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shorthop.topology import fake, labels

from bench import common

STAMP = "2026-11-20T10:00:00Z"
_FIELD = re.compile(r'"@@(\w+)@@"|@(\w+)@')


class Template:
    """JSON with holes: ``"@@name@@"`` (a whole value, filled with raw JSON) and ``@name@``
    (inside a string, filled with text that needs no escaping)."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        text = json.dumps(body, separators=(",", ":"))
        parts = _FIELD.split(text)
        self._literals = parts[0::3]
        self._names = [raw or inline for raw, inline in zip(parts[1::3], parts[2::3], strict=True)]

    def render(self, values: Mapping[str, str]) -> str:
        out = [self._literals[0]]
        for name, literal in zip(self._names, self._literals[1:], strict=True):
            out.append(values[name])
            out.append(literal)
        return "".join(out)


def fields_v1(obj: Any) -> Any:
    """The ``fieldsV1`` set of an object, as server-side apply records it in managedFields."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {".": {}} if obj else {}
        for key, value in obj.items():
            out[f"f:{key}"] = fields_v1(value)
        return out
    if isinstance(obj, list):
        out = {}
        for i, item in enumerate(obj):
            name = item.get("name", i) if isinstance(item, dict) else item
            out[f'k:{{"name":"{name}"}}'] = fields_v1(item)
        return out
    return {}


def _managed(*entries: tuple[str, str | None, Any]) -> list[dict[str, Any]]:
    out = []
    for manager, subresource, fields in entries:
        entry = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "v1",
            "time": STAMP,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(fields),
        }
        if subresource:
            entry["subresource"] = subresource
        out.append(entry)
    return out


@dataclass(frozen=True)
class App:
    """One kind of pod: a DaemonSet's, or GPU jobs'."""

    name: str
    namespace: str
    cpu: str
    memory: str
    owner: str = "DaemonSet"


DAEMONS = (
    App("kube-proxy", "kube-system", "100m", "128Mi"),
    App("cilium", "kube-system", "200m", "512Mi"),
    App("node-problem-detector", "kube-system", "20m", "64Mi"),
    App("node-exporter", "monitoring", "50m", "64Mi"),
    App("fluent-bit", "logging", "100m", "256Mi"),
    App("nvidia-device-plugin", "gpu-operator", "50m", "64Mi"),
    App("gpu-feature-discovery", "gpu-operator", "20m", "64Mi"),
    App("dcgm-exporter", "gpu-operator", "100m", "512Mi"),
    App("nvidia-container-toolkit", "gpu-operator", "50m", "128Mi"),
    App("nvidia-mig-manager", "gpu-operator", "20m", "64Mi"),
    App("csi-node", "kube-system", "20m", "64Mi"),
    App("kube-multus", "kube-system", "100m", "128Mi"),
)
JOB = App("train", "research", "16", "256Gi", owner="Job")


def _container(app: App, gpus: bool) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": app.cpu, "memory": app.memory},
        "limits": {"memory": app.memory},
    }
    if gpus:
        resources["requests"][labels.GPU_RESOURCE] = "@gpus@"
        resources["limits"][labels.GPU_RESOURCE] = "@gpus@"
    return {
        "name": app.name,
        "image": f"registry.example.com/{app.namespace}/{app.name}:v1.8.3",
        "command": [f"/usr/bin/{app.name}"],
        "args": ["--v=2", "--metrics-bind-address=0.0.0.0:9100", "--node-name=$(NODE_NAME)"],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "GOMAXPROCS", "value": "2"},
        ],
        "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}],
        "resources": resources,
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/config", "readOnly": True},
            {"name": "host-sys", "mountPath": "/host/sys", "readOnly": True},
            {
                "name": "kube-api-access",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 9100, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": app.owner == "DaemonSet", "readOnlyRootFilesystem": True},
    }


def _status(app: App, phase: str) -> dict[str, Any]:
    ready = "True" if phase == "Running" else "False"
    conditions = [
        {
            "type": t,
            "status": ready if t in ("Ready", "ContainersReady") else "True",
            "lastProbeTime": None,
            "lastTransitionTime": STAMP,
        }
        for t in (
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        )
    ]
    status: dict[str, Any] = {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}
    if phase == "Running":
        status |= {
            "hostIP": "10.0.0.1",
            "hostIPs": [{"ip": "10.0.0.1"}],
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}],
            "startTime": STAMP,
            "containerStatuses": [
                {
                    "name": app.name,
                    "state": {"running": {"startedAt": STAMP}},
                    "lastState": {},
                    "ready": True,
                    "restartCount": 0,
                    "image": f"registry.example.com/{app.namespace}/{app.name}:v1.8.3",
                    "imageID": "registry.example.com/x@sha256:" + "0" * 64,
                    "containerID": "containerd://" + "a" * 64,
                    "started": True,
                }
            ],
        }
    return status


def _pod_body(app: App, gpus: bool) -> dict[str, Any]:
    container = _container(app, gpus)
    spec: dict[str, Any] = {
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app.name}-config", "defaultMode": 420}},
            {"name": "host-sys", "hostPath": {"path": "/sys", "type": ""}},
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {
                                            "apiVersion": "v1",
                                            "fieldPath": "metadata.namespace",
                                        },
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
        "containers": [container],
        "restartPolicy": "Always" if app.owner == "DaemonSet" else "Never",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": app.name,
        "serviceAccount": app.name,
        "nodeName": "@@node@@",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    meta = {
        "name": "@name@",
        "generateName": f"{app.name}-",
        "namespace": app.namespace,
        "uid": "@uid@",
        "resourceVersion": "@rv@",
        "creationTimestamp": STAMP,
        "deletionTimestamp": "@@deleted@@",
        "labels": {
            "app.kubernetes.io/name": app.name,
            "controller-revision-hash": "7d9f8c6b5",
            "pod-template-generation": "3",
        },
        "annotations": {"kubectl.kubernetes.io/default-container": app.name},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1" if app.owner == "DaemonSet" else "batch/v1",
                "kind": app.owner,
                "name": app.name,
                "uid": "@owner@",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    status = _status(app, "Running")
    meta["managedFields"] = _managed(
        ("kube-controller-manager", None, {"metadata": meta, "spec": spec}),
        ("kubelet", "status", {"status": status}),
    )
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": spec,
        "status": "@@status@@",
    }


@dataclass
class PodSeed:
    """One generated pod, compactly; rendered on demand."""

    name: str
    app: int  # index into APPS
    node: str | None
    gpus: int
    uid: str
    version: int
    phase: str = "Running"
    deleting: bool = False

    @property
    def namespace(self) -> str:
        return APPS[self.app].namespace

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


APPS = (*DAEMONS, JOB)
JOB_APP = len(APPS) - 1


class PodRenderer:
    """Pod JSON from a :class:`PodSeed`."""

    def __init__(self) -> None:
        self._templates = [Template(_pod_body(app, app is JOB)) for app in APPS]
        self._status = {
            (i, phase): json.dumps(_status(app, phase), separators=(",", ":"))
            for i, app in enumerate(APPS)
            for phase in ("Pending", "Running")
        }

    def render(self, pod: PodSeed) -> str:
        return self._templates[pod.app].render(
            {
                "name": pod.name,
                "uid": pod.uid,
                "rv": str(pod.version),
                "owner": f"{pod.app:08d}-0000-4000-8000-000000000000",
                "node": f'"{pod.node}"' if pod.node else "null",
                "gpus": str(pod.gpus),
                "deleted": f'"{STAMP}"' if pod.deleting else "null",
                "status": self._status[(pod.app, "Running" if pod.node else "Pending")],
            }
        )


@dataclass
class NodeSeed:
    name: str
    gpus: int
    labels_json: str
    allocatable_json: str
    version: int
    beat: int = 0


def _node_body() -> dict[str, Any]:
    conditions = [
        {
            "type": t,
            "status": "True" if t == "Ready" else "False",
            "lastHeartbeatTime": "@beat@",
            "lastTransitionTime": STAMP,
            "reason": "KubeletReady" if t == "Ready" else f"KubeletHasNo{t}",
            "message": "ok",
        }
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
    ]
    status = {
        "capacity": "@@allocatable@@",
        "allocatable": "@@allocatable@@",
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "Hostname", "address": "@name@"},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "0" * 32,
            "systemUUID": "0" * 32,
            "bootID": "0" * 32,
            "kernelVersion": "6.8.0-1017-nvidia",
            "osImage": "Ubuntu 24.04.1 LTS",
            "containerRuntimeVersion": "containerd://1.7.22",
            "kubeletVersion": "v1.35.4",
            "kubeProxyVersion": "v1.35.4",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": [
            {
                "names": [
                    f"registry.example.com/team/image-{i}@sha256:{i:064d}",
                    f"registry.example.com/team/image-{i}:v{i}",
                ],
                "sizeBytes": 100_000_000 + i,
            }
            for i in range(40)
        ],
    }
    meta = {
        "name": "@name@",
        "uid": "@name@-0000-4000-8000",
        "resourceVersion": "@rv@",
        "creationTimestamp": STAMP,
        "labels": "@@labels@@",
        "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            "nfd.node.kubernetes.io/feature-labels": ",".join(f"cpu-cpuid.F{i}" for i in range(60)),
        },
    }
    spec = {
        "podCIDR": "10.244.1.0/24",
        "podCIDRs": ["10.244.1.0/24"],
        "providerID": "kwok://@name@",
    }
    meta["managedFields"] = _managed(
        ("kubelet", None, {"metadata": meta, "spec": spec}),
        ("kubelet", "status", {"status": status}),
        ("nfd-master", None, {"metadata": {"labels": {f"l{i}": "" for i in range(30)}}}),
    )
    return {"kind": "Node", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}


class NodeRenderer:
    def __init__(self) -> None:
        self._template = Template(_node_body())

    def render(self, node: NodeSeed) -> str:
        return self._template.render(
            {
                "name": node.name,
                "rv": str(node.version),
                "labels": node.labels_json,
                "allocatable": node.allocatable_json,
                "beat": f"2026-11-20T10:{node.beat // 60 % 60:02d}:{node.beat % 60:02d}Z",
            }
        )


@dataclass
class Cluster:
    """The generated state: nodes, pods, and the GPUs each node has free."""

    nodes: dict[str, NodeSeed]
    pods: dict[str, PodSeed]  # by namespace/name
    free: dict[str, int] = field(default_factory=dict)  # node -> GPUs not taken

    @property
    def gpus(self) -> int:
        return sum(n.gpus for n in self.nodes.values())


def generate(nodes: int, pods: int, occupancy: float, *, seed: int = 0) -> Cluster:
    """``nodes`` nodes (``common.mixed_shape``), GPU job pods taking about ``occupancy`` of the
    GPUs, and daemon pods spread evenly so that there are ``pods`` pods in all."""
    rng = random.Random(seed)
    objects = fake.nodes(common.mixed_shape(nodes), common.CONFIG, seed=seed)
    cluster = Cluster({}, {})
    version = 1
    for obj in objects:
        name = obj["metadata"]["name"]
        node_labels = {**obj["metadata"]["labels"], "node.kubernetes.io/instance-type": "gpu-x"}
        allocatable = {
            **obj["status"]["allocatable"],
            "ephemeral-storage": "3500Gi",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        }
        gpus = int(allocatable[labels.GPU_RESOURCE])
        cluster.nodes[name] = NodeSeed(
            name, gpus, json.dumps(node_labels), json.dumps(allocatable), version
        )
        cluster.free[name] = gpus
        version += 1
    for node in cluster.nodes.values():
        taken = sum(1 for _ in range(node.gpus) if rng.random() < occupancy)
        while taken > 0:
            size = min(taken, rng.choice((1, 2, 4, 8)))
            add_job(cluster, node.name, size, version, rng)
            taken -= size
            version += 1
    daemons = max(0, pods - len(cluster.pods))
    names = list(cluster.nodes)
    for i in range(daemons):
        node = names[i % len(names)]
        app = (i // len(names)) % len(DAEMONS)
        pod = PodSeed(f"{DAEMONS[app].name}-{_suffix(rng)}", app, node, 0, _uid(rng), version)
        cluster.pods[pod.key] = pod
        version += 1
    return cluster


def add_job(
    cluster: Cluster, node: str | None, gpus: int, version: int, rng: random.Random
) -> PodSeed:
    """A new GPU job pod (bound to ``node`` when given), named like no pod there is."""
    pod = PodSeed(f"train-{_suffix(rng)}", JOB_APP, node, gpus, _uid(rng), version)
    while pod.key in cluster.pods:
        pod.name = f"train-{_suffix(rng)}"
    cluster.pods[pod.key] = pod
    if node is not None:
        cluster.free[node] -= gpus
    return pod


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(10))


def _uid(rng: random.Random) -> str:
    return "%08x-%04x-4%03x-8%03x-%012x" % (  # noqa: UP031
        rng.getrandbits(32),
        rng.getrandbits(16),
        rng.getrandbits(12),
        rng.getrandbits(12),
        rng.getrandbits(48),
    )


def sizes(cluster: Cluster) -> Iterator[tuple[str, int]]:
    """(kind, bytes) of one rendered object of each kind, for the report."""
    pods, nodes = PodRenderer(), NodeRenderer()
    by_app: dict[int, PodSeed] = {}
    for pod in cluster.pods.values():
        by_app.setdefault(pod.app, pod)
    job = by_app.get(JOB_APP)
    daemon = next((p for a, p in by_app.items() if a != JOB_APP), None)
    if daemon is not None:
        yield "daemon pod", len(pods.render(daemon))
    if job is not None:
        yield "GPU job pod", len(pods.render(job))
    node = next(iter(cluster.nodes.values()))
    yield "node", len(nodes.render(node))
