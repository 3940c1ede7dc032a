"""The node agent's only calls to the Kubernetes API: read and annotate its own Node, post Events.

Deliberately separate from the operator's ``controller.kube``: the agent runs on every GPU node
with a ServiceAccount that may only ``get``/``patch`` nodes and ``create`` events (and a
ValidatingAdmissionPolicy narrows the patch to its own node's topology annotations), so it needs
three calls, not the operator's client. ``ApiException`` is translated here, once, into
:class:`AgentKubeError`. Caller: ``agent.publisher``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

import shorthop
from shorthop.errors import ShorthopError

COMPONENT = "shorthop-node-agent"
FIELD_MANAGER = COMPONENT  # of its annotations and events (``managedFields``)


class AgentKubeError(ShorthopError):
    """An API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{what}: HTTP {status} {reason}".strip())


def _error(what: str, exc: ApiException | urllib3.exceptions.HTTPError) -> AgentKubeError:
    if not isinstance(exc, ApiException):
        return AgentKubeError(what, 0, f"no answer: {exc}")
    reason = exc.reason or ""
    body = getattr(exc, "body", None)
    if isinstance(body, (bytes, str)) and body:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        with contextlib.suppress(ValueError, AttributeError):
            reason = json.loads(text).get("message", reason)
    return AgentKubeError(what, int(exc.status or 0), reason)


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from ``kubeconfig``, else the pod's ServiceAccount, else ``$KUBECONFIG``."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise ShorthopError(
            f"no Kubernetes credentials: {exc}; pass --kubeconfig or run in a pod"
        ) from None
    api = client.ApiClient(configuration)
    api.user_agent = f"{FIELD_MANAGER}/{shorthop.__version__}"
    return api


class NodeClient:
    """Calls about one Node. Every failure raises :class:`AgentKubeError`."""

    def __init__(self, api: client.ApiClient, node: str, *, events_namespace: str = "default"):
        self.core = client.CoreV1Api(api)
        self.node = node
        self.events_namespace = events_namespace
        self._uid: str | None = None

    def annotations(self) -> dict[str, str]:
        """The Node's current annotations (and remembers its uid for events)."""
        try:
            response = self.core.read_node(self.node, _preload_content=False)
            body = json.loads(response.data)
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            raise _error(f"get node {self.node}", exc) from None
        meta = body.get("metadata") or {}
        self._uid = meta.get("uid")
        return {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}

    def patch_annotations(self, values: Mapping[str, str]) -> None:
        """A JSON merge patch of ``metadata.annotations`` only (what the admission policy
        allows the agent to change)."""
        body = {"metadata": {"annotations": dict(values)}}
        try:
            response = self.core.patch_node(
                self.node,
                body,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
            response.data  # noqa: B018 - read the body so the connection returns to the pool
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            raise _error(f"annotate node {self.node}", exc) from None

    def event(self, *, reason: str, message: str, warning: bool) -> None:
        """An Event about the Node, in ``events_namespace`` (``default``, as the kubelet's)."""
        if self._uid is None:
            # kubectl describe node matches events by the Node's uid too: learn it if we can.
            with contextlib.suppress(AgentKubeError):
                self.annotations()
        now = datetime.datetime.now(datetime.UTC)
        involved = {"apiVersion": "v1", "kind": "Node", "name": self.node}
        if self._uid:
            involved["uid"] = self._uid
        body: dict[str, Any] = {
            "metadata": {"generateName": f"{self.node}.", "namespace": self.events_namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": COMPONENT,
            "reportingInstance": f"{COMPONENT}-{self.node}"[:128],
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        try:
            response = self.core.create_namespaced_event(
                self.events_namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
            )
            response.data  # noqa: B018 - read the body so the connection returns to the pool
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            raise _error("create event", exc) from None
