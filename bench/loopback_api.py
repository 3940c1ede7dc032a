"""A Kubernetes API over loopback HTTP, holding a large cluster, for the footprint benchmark.

It serves the part of the API the operator (``shorthop run``, unchanged) calls: nodes and pods
listed in pages (``limit``/``continue``) and watched (with bookmarks and ``410 Gone``), pods
created, bound, read and deleted, Services and Events created, InferenceDeployments listed and
watched (kopf) and their status patched, the leader-election Lease, and API discovery. Nodes
and the background pods come from :mod:`bench.bigcluster` and are rendered from templates when
served, so 100,000 pods cost the server little memory and a page of 500 a few milliseconds.

Why not the real API server: see ``bench/footprint.py`` (the capacity probe). This server has
no authentication, admission or validation, and is not a Kubernetes implementation: a bound pod
is marked Running at once (as kwok does), a deletion is immediate, list pages render objects as
they are when the page is served (the watch from the list's version then replays the changes
made meanwhile, which informers apply idempotently).

Benchmark control (``/bench/...``): create a deployment (its create time and the time its last
pod was bound are recorded here, on the server's monotonic clock), run churn — GPU job pods
replaced and node status updates at given rates — and read counters.

Run: ``python -m bench.loopback_api --nodes N --pods M --occupancy F``; prints ``ready <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bench import bigcluster

LOG_SIZE = 50_000  # watch events kept for watches that resume from an older version
BOOKMARK_SECONDS = 5.0
GROUP, VERSION, PLURAL = "shorthop.io", "v1alpha1", "inferencedeployments"
JSON = "application/json"


class EventLog:
    """One kind's recent watch events, and the watches following it."""

    def __init__(self) -> None:
        self.entries: deque[tuple[int, bytes]] = deque(maxlen=LOG_SIZE)
        self.watchers: set[asyncio.Queue[bytes]] = set()

    def emit(self, rv: int, kind: str, body: str) -> None:
        line = f'{{"type":"{kind}","object":{body}}}\n'.encode()
        self.entries.append((rv, line))
        for queue in self.watchers:
            queue.put_nowait(line)

    def since(self, rv: int) -> list[bytes] | None:
        """Events after ``rv``; None when some of them were dropped already (410 Gone)."""
        full = len(self.entries) == self.entries.maxlen
        if full and self.entries and rv < self.entries[0][0] - 1:
            return None
        return [line for v, line in self.entries if v > rv]


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _gpus(pod: dict[str, Any]) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        limits = (c.get("resources") or {}).get("limits") or {}
        total += int(limits.get("nvidia.com/gpu", 0) or 0)
    return total


class LoopbackApi:
    def __init__(self, cluster: bigcluster.Cluster, seed: int = 0) -> None:
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.rv = max(
            [n.version for n in cluster.nodes.values()] + [p.version for p in cluster.pods.values()]
        )
        self.pod_renderer, self.node_renderer = bigcluster.PodRenderer(), bigcluster.NodeRenderer()
        self.own: dict[str, dict[str, Any]] = {}  # pods created through the API
        self.crs: dict[str, dict[str, Any]] = {}
        self.services: set[str] = set()
        self.leases: dict[str, dict[str, Any]] = {}
        self.logs = {"nodes": EventLog(), "pods": EventLog(), PLURAL: EventLog()}
        self.requests: Counter[str] = Counter()
        self.deployments: dict[str, dict[str, Any]] = {}  # bench records, by namespace/name
        self._lists: dict[str, tuple[int, list[str]]] = {}
        self.churn: dict[str, Any] = {"running": False}
        self.jobs = [k for k, p in cluster.pods.items() if p.app == bigcluster.JOB_APP]

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    # -- rendering -------------------------------------------------------------------------

    def render(self, kind: str, key: str) -> str | None:
        if kind == "nodes":
            node = self.cluster.nodes.get(key)
            return self.node_renderer.render(node) if node else None
        if kind == "pods":
            if key in self.own:
                return json.dumps(self.own[key])
            pod = self.cluster.pods.get(key)
            return self.pod_renderer.render(pod) if pod else None
        cr = self.crs.get(key)
        return json.dumps(cr) if cr else None

    def keys(self, kind: str) -> list[str]:
        if kind == "nodes":
            return sorted(self.cluster.nodes)
        if kind == "pods":
            return sorted(itertools.chain(self.cluster.pods, self.own))
        return sorted(self.crs)

    # -- list and watch --------------------------------------------------------------------

    async def list_or_watch(self, request: web.Request, kind: str) -> web.StreamResponse:
        query = request.query
        if query.get("watch") in ("true", "1"):
            self.requests[f"WATCH {kind}"] += 1
            return await self._watch(request, kind)
        namespace = request.match_info.get("ns")
        selector = query.get("fieldSelector") or ""
        if namespace is not None or selector:
            return self._list_one(kind, namespace, selector)
        self.requests[f"LIST {kind}"] += 1
        limit = int(query.get("limit") or 0)
        token = query.get("continue") or ""
        if token:
            list_id, _, offset_text = token.partition(":")
            if list_id not in self._lists:
                return _status(410, "Expired", "the continue token has expired")
            rv, keys = self._lists[list_id]
            offset = int(offset_text)
        else:
            rv, keys, offset, list_id = self.rv, self.keys(kind), 0, uuid.uuid4().hex
            self._lists[list_id] = (rv, keys)
        end = len(keys) if limit <= 0 else min(len(keys), offset + limit)
        items = [body for k in keys[offset:end] if (body := self.render(kind, k)) is not None]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if end < len(keys):
            meta["continue"] = f"{list_id}:{end}"
        else:
            self._lists.pop(list_id, None)
        head = f'{{"kind":"List","apiVersion":"v1","metadata":{json.dumps(meta)}'
        text = f'{head},"items":[{",".join(items)}]}}'
        return web.Response(body=text.encode(), content_type=JSON)

    def _list_one(self, kind: str, namespace: str | None, selector: str) -> web.Response:
        """A list narrowed to one object by ``metadata.name=`` (how the operator reads a pod or
        a node fresh: it may list them, not get them)."""
        self.requests[f"LIST {kind} by name"] += 1
        field_name, _, name = selector.partition("=")
        if field_name != "metadata.name":
            return _status(400, "BadRequest", f"field selector {selector!r} is not served here")
        key = name if namespace is None else f"{namespace}/{name}"
        body = self.render(kind, key)
        meta = json.dumps({"resourceVersion": str(self.rv)})
        text = f'{{"kind":"List","apiVersion":"v1","metadata":{meta},"items":[{body or ""}]}}'
        return web.Response(body=text.encode(), content_type=JSON)

    async def _watch(self, request: web.Request, kind: str) -> web.StreamResponse:
        log = self.logs[kind]
        since = int(request.query.get("resourceVersion") or self.rv)
        backlog = log.since(since)
        response = web.StreamResponse(headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if backlog is None:
            expired = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "too old resource version",
                "reason": "Expired",
                "code": 410,
            }
            await response.write(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
            return response
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        log.watchers.add(queue)
        deadline = time.monotonic() + float(request.query.get("timeoutSeconds") or 300)
        try:
            for line in backlog:
                await response.write(line)
            while time.monotonic() < deadline:
                try:
                    line = await asyncio.wait_for(queue.get(), BOOKMARK_SECONDS)
                except TimeoutError:
                    if request.query.get("allowWatchBookmarks") in ("true", "1"):
                        mark = {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": "Pod",
                                "apiVersion": "v1",
                                "metadata": {"resourceVersion": str(self.rv)},
                            },
                        }
                        await response.write(json.dumps(mark).encode() + b"\n")
                    continue
                lines = [line]
                while not queue.empty() and len(lines) < 256:
                    lines.append(queue.get_nowait())
                await response.write(b"".join(lines))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            log.watchers.discard(queue)
        return response

    # -- pods ------------------------------------------------------------------------------

    def emit_pod(self, kind: str, key: str, body: str | None = None) -> None:
        rendered = body if body is not None else self.render("pods", key)
        if rendered is not None:
            self.logs["pods"].emit(self.rv, kind, rendered)

    async def create_pod(self, request: web.Request) -> web.Response:
        self.requests["POST pods"] += 1
        ns = request.match_info["ns"]
        body = await request.json()
        meta = body.setdefault("metadata", {})
        meta["namespace"] = ns
        key = f"{ns}/{meta['name']}"
        if key in self.own or key in self.cluster.pods:
            return _status(409, "AlreadyExists", f"pods {meta['name']} already exists")
        meta |= {
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(self.next_rv()),
            "creationTimestamp": bigcluster.STAMP,
        }
        body.setdefault("status", {"phase": "Pending"})
        self.own[key] = body
        self.emit_pod("ADDED", key)
        return web.json_response(body, status=201)

    async def bind_pod(self, request: web.Request) -> web.Response:
        self.requests["POST pods/binding"] += 1
        ns, name = request.match_info["ns"], request.match_info["name"]
        key = f"{ns}/{name}"
        pod = self.own.get(key)
        binding = await request.json()
        if pod is None:
            return _status(404, "NotFound", f"pods {name} not found")
        if pod["spec"].get("nodeName"):
            return _status(409, "Conflict", f"pod {name} is already assigned to a node")
        node = binding["target"]["name"]
        pod["spec"]["nodeName"] = node
        self.cluster.free[node] = self.cluster.free.get(node, 0) - _gpus(pod)
        pod["metadata"]["resourceVersion"] = str(self.next_rv())
        self.emit_pod("MODIFIED", key)
        self._bound(pod)
        # The kubelet (kwok in the end-to-end benchmarks) starts it.
        pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        pod["metadata"]["resourceVersion"] = str(self.next_rv())
        self.emit_pod("MODIFIED", key)
        return web.json_response({"kind": "Status", "status": "Success", "code": 201}, status=201)

    def _bound(self, pod: dict[str, Any]) -> None:
        deployment = (pod["metadata"].get("labels") or {}).get("shorthop.io/deployment")
        record = self.deployments.get(f"{pod['metadata']['namespace']}/{deployment}")
        if record is None:
            return
        record["bound"] += 1
        if record["bound"] >= record["pods"] and record.get("done") is None:
            record["done"] = time.monotonic()

    async def get_pod(self, request: web.Request) -> web.Response:
        self.requests["GET pods"] += 1
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        body = self.render("pods", key)
        if body is None:
            return _status(404, "NotFound", "pod not found")
        return web.Response(body=body.encode(), content_type=JSON)

    async def delete_pod(self, request: web.Request) -> web.Response:
        self.requests["DELETE pods"] += 1
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        pod = self.own.pop(key, None)
        if pod is None:
            return _status(404, "NotFound", "pod not found")
        node = pod["spec"].get("nodeName")
        if node:
            self.cluster.free[node] = self.cluster.free.get(node, 0) + _gpus(pod)
        self.next_rv()
        pod["metadata"]["resourceVersion"] = str(self.rv)
        self.emit_pod("DELETED", key, json.dumps(pod))
        return web.json_response(pod)

    # -- everything else the operator writes -----------------------------------------------

    async def create_service(self, request: web.Request) -> web.Response:
        self.requests["POST services"] += 1
        body = await request.json()
        key = f"{request.match_info['ns']}/{body['metadata']['name']}"
        if key in self.services:
            return _status(409, "AlreadyExists", "service already exists")
        self.services.add(key)
        return web.json_response(body, status=201)

    async def create_event(self, request: web.Request) -> web.Response:
        self.requests["POST events"] += 1
        return web.json_response(await request.json(), status=201)

    async def patch_status(self, request: web.Request) -> web.Response:
        self.requests["PATCH inferencedeployments/status"] += 1
        key = f"{request.match_info['ns']}/{request.match_info['name']}"
        cr = self.crs.get(key)
        if cr is None:
            return _status(404, "NotFound", "not found")
        patch = await request.json()
        cr["status"] = _merge(cr.get("status") or {}, patch.get("status") or {})
        cr["metadata"]["resourceVersion"] = str(self.next_rv())
        self.logs[PLURAL].emit(self.rv, "MODIFIED", json.dumps(cr))
        return web.json_response(cr)

    async def lease(self, request: web.Request) -> web.Response:
        self.requests[f"{request.method} leases"] += 1
        ns, name = request.match_info["ns"], request.match_info.get("name")
        if request.method == "GET":
            found = self.leases.get(f"{ns}/{name}")
            return web.json_response(found) if found else _status(404, "NotFound", "no lease")
        body = await request.json()
        key = f"{ns}/{body['metadata']['name']}"
        old = self.leases.get(key)
        if request.method == "POST" and old is not None:
            return _status(409, "AlreadyExists", "lease exists")
        if request.method == "PUT" and (
            old is None
            or old["metadata"]["resourceVersion"] != body["metadata"].get("resourceVersion")
        ):
            return _status(409, "Conflict", "the lease was modified")
        body["metadata"] |= {
            "namespace": ns,
            "resourceVersion": str(self.next_rv()),
            "uid": (old or {}).get("metadata", {}).get("uid", str(uuid.uuid4())),
        }
        body.setdefault("apiVersion", "coordination.k8s.io/v1")
        body.setdefault("kind", "Lease")
        self.leases[key] = body
        return web.json_response(body, status=201 if request.method == "POST" else 200)

    # -- benchmark control -----------------------------------------------------------------

    async def bench_deploy(self, request: web.Request) -> web.Response:
        body = await request.json()
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        pods = sum(
            r["replicas"] * (r["gpusPerReplica"] // r.get("gpusPerPod", r["gpusPerReplica"]))
            for r in body["spec"]["roles"]
        )
        meta |= {
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": str(self.next_rv()),
            "creationTimestamp": bigcluster.STAMP,
        }
        self.crs[key] = body
        self.deployments[key] = {"pods": pods, "bound": 0, "created": time.monotonic()}
        self.logs[PLURAL].emit(self.rv, "ADDED", json.dumps(body))
        return web.json_response({"pods": pods})

    async def bench_state(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "deployments": self.deployments,
                "requests": dict(self.requests),
                "churn": self.churn,
                "rv": self.rv,
                "pods": len(self.cluster.pods) + len(self.own),
                "gpus": self.cluster.gpus,
                "free_gpus": sum(self.cluster.free.values()),
                "backlog": sum(q.qsize() for log in self.logs.values() for q in log.watchers),
            }
        )

    async def bench_churn(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.churn = {"running": True, "replaced": 0, "node_updates": 0, "spec": spec}
        asyncio.get_running_loop().create_task(self._churn(spec))
        return web.json_response(self.churn)

    async def _churn(self, spec: dict[str, Any]) -> None:
        try:
            await self._churn_for(spec)
        except Exception as exc:  # the benchmark reads it from /bench/state and stops
            self.churn |= {"running": False, "error": repr(exc)}
            raise

    async def _churn_for(self, spec: dict[str, Any]) -> None:
        """Replace GPU job pods and update node statuses at the given rates for ``seconds``."""
        started = time.monotonic()
        seconds = float(spec["seconds"])
        pods_rate, nodes_rate = float(spec["replacements_per_s"]), float(spec["node_updates_per_s"])
        names = list(self.cluster.nodes)
        done_pods = done_nodes = 0
        while (elapsed := time.monotonic() - started) < seconds and self.churn.get("running"):
            for _ in range(int(elapsed * pods_rate) - done_pods):
                self._replace_job()
                done_pods += 1
            for _ in range(int(elapsed * nodes_rate) - done_nodes):
                node = self.cluster.nodes[self.rng.choice(names)]
                node.beat += 1
                node.version = self.next_rv()
                self.logs["nodes"].emit(self.rv, "MODIFIED", self.node_renderer.render(node))
                done_nodes += 1
            self.churn |= {"replaced": done_pods, "node_updates": done_nodes}
            await asyncio.sleep(0.01)
        self.churn |= {"running": False, "seconds": round(time.monotonic() - started, 2)}

    def _replace_job(self) -> None:
        """A GPU job ends (deleting, then deleted) and a new one starts (pending, then bound)."""
        if not self.jobs:
            return
        i = self.rng.randrange(len(self.jobs))
        key = self.jobs[i]
        old = self.cluster.pods.pop(key)
        old.deleting, old.version = True, self.next_rv()
        self.emit_pod("MODIFIED", key, self.pod_renderer.render(old))
        self.next_rv()
        self.emit_pod("DELETED", key, self.pod_renderer.render(old))
        if old.node is not None:
            self.cluster.free[old.node] += old.gpus
        new = bigcluster.add_job(self.cluster, None, old.gpus, self.next_rv(), self.rng)
        self.jobs[i] = new.key
        self.emit_pod("ADDED", new.key)
        names = list(self.cluster.free)
        for _ in range(50):
            node = self.rng.choice(names)
            if self.cluster.free[node] >= new.gpus:
                new.node, new.version = node, self.next_rv()
                self.cluster.free[node] -= new.gpus
                self.emit_pod("MODIFIED", new.key)
                return


def _merge(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _discovery() -> dict[str, Any]:
    def resource(name: str, kind: str, namespaced: bool = True) -> dict[str, Any]:
        return {
            "name": name,
            "singularName": kind.lower(),
            "namespaced": namespaced,
            "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }

    core = [
        resource("pods", "Pod"),
        resource("pods/binding", "Binding"),
        resource("nodes", "Node", False),
        resource("services", "Service"),
        resource("events", "Event"),
        # kopf waits for these two to be discovered before it watches anything (it neither
        # lists nor watches them here: the operator runs it clusterwide with scanning off).
        resource("namespaces", "Namespace", False),
    ]
    crd = [
        {**resource(PLURAL, "InferenceDeployment"), "shortNames": ["infd"]},
        resource(f"{PLURAL}/status", "InferenceDeployment"),
    ]
    groups = [(GROUP, VERSION), ("coordination.k8s.io", "v1"), ("apiextensions.k8s.io", "v1")]
    return {
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": core},
        "/apis": {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in groups
            ],
        },
        f"/apis/{GROUP}/{VERSION}": {
            "kind": "APIResourceList",
            "groupVersion": f"{GROUP}/{VERSION}",
            "resources": crd,
        },
        "/apis/apiextensions.k8s.io/v1": {
            "kind": "APIResourceList",
            "groupVersion": "apiextensions.k8s.io/v1",
            "resources": [resource("customresourcedefinitions", "CustomResourceDefinition", False)],
        },
        "/apis/coordination.k8s.io/v1": {
            "kind": "APIResourceList",
            "groupVersion": "coordination.k8s.io/v1",
            "resources": [resource("leases", "Lease")],
        },
        "/version": {"major": "1", "minor": "35", "gitVersion": "v1.35.0-loopback"},
    }


def app(api: LoopbackApi) -> web.Application:
    @web.middleware
    async def unserved(request: web.Request, handler: Any) -> web.StreamResponse:
        """Counts the requests this server has no route for (``/bench/state`` shows them)."""
        response: web.StreamResponse = await handler(request)
        if response.status in (404, 405) and request.match_info.route.resource is None:
            api.requests[f"UNSERVED {request.method} {request.path}"] += 1
        return response

    application = web.Application(client_max_size=64 * 2**20, middlewares=[unserved])
    routes = application.router

    def static(body: dict[str, Any]) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.json_response(body)

        return handler

    for path, body in _discovery().items():
        routes.add_get(path, static(body))
    routes.add_get("/api/v1/nodes", lambda r: api.list_or_watch(r, "nodes"))
    routes.add_get("/api/v1/pods", lambda r: api.list_or_watch(r, "pods"))
    routes.add_post("/api/v1/namespaces/{ns}/pods", api.create_pod)
    routes.add_get("/api/v1/namespaces/{ns}/pods", lambda r: api.list_or_watch(r, "pods"))
    routes.add_get("/api/v1/namespaces/{ns}/pods/{name}", api.get_pod)
    routes.add_delete("/api/v1/namespaces/{ns}/pods/{name}", api.delete_pod)
    routes.add_post("/api/v1/namespaces/{ns}/pods/{name}/binding", api.bind_pod)
    routes.add_post("/api/v1/namespaces/{ns}/services", api.create_service)
    routes.add_post("/api/v1/namespaces/{ns}/events", api.create_event)
    routes.add_get(f"/apis/{GROUP}/{VERSION}/{PLURAL}", lambda r: api.list_or_watch(r, PLURAL))
    routes.add_patch(
        f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}/{{name}}/status", api.patch_status
    )
    leases = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    routes.add_post(leases, api.lease)
    routes.add_get(leases + "/{name}", api.lease)
    routes.add_put(leases + "/{name}", api.lease)
    routes.add_post("/bench/deployments", api.bench_deploy)
    routes.add_get("/bench/state", api.bench_state)
    routes.add_post("/bench/churn", api.bench_churn)
    return application


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loopback_api")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--occupancy", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    cluster = bigcluster.generate(args.nodes, args.pods, args.occupancy, seed=args.seed)
    api = LoopbackApi(cluster, seed=args.seed)

    async def serve() -> None:
        runner = web.AppRunner(app(api), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"ready {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
