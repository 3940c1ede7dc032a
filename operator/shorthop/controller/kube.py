"""The only module that calls the Kubernetes API (through the official client).

Every ``ApiException`` is translated here, once, into the typed errors of
:mod:`shorthop.errors` (httpx style): the class follows the HTTP status and the Status object's
``reason`` (``NotFound``, ``Conflict``, ``AlreadyExists``...), never the message text; a call
that got no answer is a :class:`~shorthop.errors.NoAnswer`. Callers decide by type: the
reconciler, the binder, the leader election, the informers.
"""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

import shorthop
from shorthop import errors
from shorthop.api import models
from shorthop.controller import fields
from shorthop.errors import KubeError, ShorthopError

__all__ = ["FIELD_MANAGER", "Kube", "KubeError", "api_client", "api_error", "status_error"]

# The field manager of every write (``managedFields``), so that server-side-apply users see
# shorthop owning what it writes. The client's User-Agent names it too: the API server takes the
# manager of a write without one from there.
FIELD_MANAGER = "shorthop"


def _status_object(exc: ApiException) -> Mapping[str, Any]:
    """The Status object the API server sent with the error (empty when there is none)."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) and parsed.get("kind") == "Status" else {}


def api_error(what: str, exc: ApiException) -> KubeError:
    """The typed error for a failed call; ``what`` names the call in the message."""
    return status_error(what, int(exc.status or 0), _status_object(exc), str(exc.reason or ""))


def status_error(what: str, status: int, found: Mapping[str, Any], fallback: str = "") -> KubeError:
    """The typed error for an HTTP status and the Status object that came with it (a failed
    call's body, or a watch's ERROR event)."""
    reason = str(found.get("reason") or "")
    message = str(found.get("message") or fallback)
    kind: type[KubeError] = KubeError
    if status == 0:
        kind = errors.NoAnswer
    elif status == 404:
        kind = errors.NotFound
    elif status == 409:
        kind = errors.AlreadyExists if reason == "AlreadyExists" else errors.Conflict
    elif status == 410:
        kind = errors.Expired
    elif status == 422:
        kind = errors.Invalid
    elif status == 429:
        kind = errors.Throttled
    elif status >= 500:
        kind = errors.ServerError
    return kind(what, status, message, reason=reason)


POOL_HEADROOM = 32  # connections beyond the API threads: workers, watches, lease, metrics


def api_client(
    kubeconfig: str | None = None, *, qps_threads: int = 64, retries: int | None = None
) -> client.ApiClient:
    """A client from an explicit kubeconfig, ``$KUBECONFIG``/``~/.kube/config``, or the pod's
    service account, in that order. ``retries``: urllib3's retries of a request that got no
    answer (None: urllib3's default, three)."""
    configuration = client.Configuration()
    configuration.retries = retries
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
            f"no Kubernetes credentials: {exc}; set KUBECONFIG or run in a pod"
        ) from None
    # Every thread that may call at once needs a pooled connection: the API threads, the
    # reconcile workers, the long-lived watches and the lease. A busy pool opens (and then drops)
    # extra connections, and each costs a TLS handshake: that showed as ~11% of the operator's
    # time under load.
    configuration.connection_pool_maxsize = qps_threads + POOL_HEADROOM
    api = client.ApiClient(configuration)
    api.user_agent = f"{FIELD_MANAGER}/{shorthop.__version__}"
    _no_answer_is_an_api_exception(api.rest_client)
    return api


def _no_answer_is_an_api_exception(rest: Any) -> None:
    """Make the REST client raise ``ApiException(status=0)`` when no answer comes (connection
    refused or reset, the response lost), as it already does for TLS errors, instead of urllib3's
    own exceptions. Every ``except ApiException`` here, in the lease election and in the
    informers then sees a retriable ``KubeError``/status 0 rather than an unexpected exception
    that skipped their clean-up (a pod's assumed GPUs stayed taken for minutes). Bodies read later
    from ``_preload_content=False`` responses go through :func:`_body`, which does the same."""
    request = rest.request

    def request_or_api_exception(*args: Any, **kwargs: Any) -> Any:
        try:
            return request(*args, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise ApiException(status=0, reason=f"no answer: {exc}") from None

    rest.request = request_or_api_exception


def _body(response: Any) -> bytes:
    """Read a raw (``_preload_content=False``) response to its end, which hands its connection
    back to the pool. Left unread, every call would hold its connection until garbage
    collection and the next call would open a new one, TLS handshake included. A body cut off
    (the API server killed mid-answer) is a no-answer ``ApiException``, like a lost response
    (found by chaos/test_apiserver.py: an ``IncompleteRead`` escaped a reconcile)."""
    try:
        return bytes(response.data)
    except urllib3.exceptions.HTTPError as exc:
        raise ApiException(status=0, reason=f"no answer: {exc}") from None


def _read_or_none(what: str, read: Callable[..., Any], *args: str) -> dict[str, Any] | None:
    """The object ``read(*args)`` returns, or None when the API server has none (404)."""
    try:
        found: dict[str, Any] = json.loads(_body(read(*args, _preload_content=False)))
    except ApiException as exc:
        error = api_error(what, exc)
        if isinstance(error, errors.NotFound):
            return None
        raise error from None
    return found


def unvalidated(api: Any, name: str) -> Callable[..., Any]:
    """The generated client method ``name`` of ``api`` without pydantic's argument validation
    (``validate_call``, ``raw_function``), or the method itself where the client has none.

    The operator builds every argument itself; validating a pod body on each create cost more
    CPU than serialising and sending it (0.41 vs 0.12 ms per create in a micro-benchmark), and
    the per-pod calls are the operator's hot path (docs/benchmarks.md, side by side)."""
    raw = getattr(getattr(type(api), name), "raw_function", None)
    return functools.partial(raw, api) if callable(raw) else getattr(api, name)


class Kube:
    """Typed calls the operator makes. Thread-safe (the client's pool is)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.resource = client.ResourceV1Api(api)
        # The calls made per pod, per claim or per status write (see :func:`unvalidated`).
        self._create_pod = unvalidated(self.core, "create_namespaced_pod")
        self._bind = unvalidated(self.core, "create_namespaced_pod_binding")
        self._patch_status = unvalidated(self.custom, "patch_namespaced_custom_object_status")
        self._read_claim = unvalidated(self.resource, "read_namespaced_resource_claim")
        self._create_claim = unvalidated(self.resource, "create_namespaced_resource_claim")
        self._list_claims = unvalidated(self.resource, "list_resource_claim_for_all_namespaces")
        self._create_service = unvalidated(self.core, "create_namespaced_service")
        self._create_event = unvalidated(self.core, "create_namespaced_event")
        self._claim_status = unvalidated(self.resource, "replace_namespaced_resource_claim_status")
        self._read_runtime_class = unvalidated(client.NodeV1Api(api), "read_runtime_class")

    # -- discovery -------------------------------------------------------------------------

    def dra_resources(self) -> set[str] | None:
        """The resources ``resource.k8s.io/v1`` serves (``resourceclaims/status`` for a
        subresource), or None when the server does not serve that version: asked of the
        server's discovery, never assumed from a version number."""
        try:
            response = self.resource.get_api_resources(_preload_content=False)
            found = json.loads(_body(response))
        except ApiException as exc:
            error = api_error("discover resource.k8s.io/v1", exc)
            if isinstance(error, errors.NotFound):
                return None
            raise error from None
        return {str(r.get("name")) for r in found.get("resources") or [] if isinstance(r, dict)}

    # -- pods ------------------------------------------------------------------------------

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as stored now (a quorum read, not a cache), or None when there is none.
        Read by listing with a field selector: the operator may list pods (it watches them
        cluster-wide), not get them, and one verb fewer in its RBAC is one less to grant."""
        try:
            response = self.core.list_namespaced_pod(
                namespace, field_selector=f"metadata.name={name}", _preload_content=False
            )
            items = json.loads(_body(response)).get("items") or []
        except ApiException as exc:
            raise api_error(f"read pod {namespace}/{name}", exc) from None
        return dict(items[0]) if items else None

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            # Raw JSON back: deserialising into client models costs more than the call.
            response = self._create_pod(
                namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
            )
            created: dict[str, Any] = json.loads(_body(response))
        except ApiException as exc:
            raise api_error(f"create pod {namespace}/{body['metadata']['name']}", exc) from None
        return created

    def delete_pod(
        self, namespace: str, name: str, *, force: bool = False, uid: str | None = None
    ) -> None:
        """Delete the pod (only the one of ``uid`` when given); done when it is already gone
        or a newer pod took the name."""
        options = client.V1DeleteOptions(
            grace_period_seconds=0 if force else None,
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except ApiException as exc:
            error = api_error(f"delete pod {namespace}/{name}", exc)
            if isinstance(error, (errors.NotFound, errors.Conflict)):
                return
            raise error from None

    def bind(self, namespace: str, name: str, node: str, *, uid: str | None = None) -> None:
        """POST pods/binding. The response body (a Status) is not deserialised: some client
        versions fail to parse it as a Binding although the bind succeeded."""
        meta = {"name": name} if uid is None else {"name": name, "uid": uid}
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": meta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        what = f"bind {namespace}/{name} to {node}"
        try:
            response = self._bind(
                name, namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
            )
            _body(response)
        except ApiException as exc:
            raise api_error(what, exc) from None
        if response.status not in (200, 201):
            raise KubeError(what, int(response.status), "unexpected status")

    # -- runtime classes (node.k8s.io/v1) -------------------------------------------------

    def runtime_class(self, name: str) -> dict[str, Any] | None:
        """The RuntimeClass as stored now, or None when there is none (the API server then
        refuses pods naming it). Read once per visit of a deployment whose template names it."""
        return _read_or_none(f"get runtimeclass {name}", self._read_runtime_class, name)

    # -- resource claims (Dynamic Resource Allocation, resource.k8s.io/v1) ----------------

    def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ResourceClaim as stored now, or None when there is none."""
        return _read_or_none(
            f"get resourceclaim {namespace}/{name}", self._read_claim, name, namespace
        )

    def create_claim(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        try:
            response = self._create_claim(namespace, body, _preload_content=False)
            created: dict[str, Any] = json.loads(_body(response))
        except ApiException as exc:
            raise api_error(f"create resourceclaim {namespace}/{name}", exc) from None
        return created

    def update_claim_status(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the claim's status (its ``metadata.resourceVersion`` makes it conditional, as
        kube-scheduler's update is): a :class:`~shorthop.errors.Conflict` when it changed."""
        name = body["metadata"]["name"]
        try:
            response = self._claim_status(name, namespace, body, _preload_content=False)
            updated: dict[str, Any] = json.loads(_body(response))
        except ApiException as exc:
            raise api_error(f"update status of resourceclaim {namespace}/{name}", exc) from None
        return updated

    def list_claims(self) -> list[dict[str, Any]]:
        """Every ResourceClaim of the cluster as stored now: a list without a resourceVersion is
        served from etcd (a consistent read, newer than anything this operator wrote before the
        call), paged as the informers page theirs; the pages form one snapshot. Only the fields
        shorthop reads are decoded (``fields.CLAIM``): each bind through a claim reads this list,
        and decoding whole claims was most of what DRA mode cost the operator per pod."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page: dict[str, Any] = {"limit": 500}
            if token:
                page["_continue"] = token
            try:
                response = self._list_claims(_preload_content=False, **page)
                found, meta = fields.CLAIM_CODEC.page(_body(response))
            except ApiException as exc:
                raise api_error("list resourceclaims", exc) from None
            items.extend(i for i in found if isinstance(i, dict))
            token = str(meta.get("continue") or "")
            if not token:
                return items

    def delete_claim(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Delete the claim (only the one of ``uid`` when given); done when it is gone."""
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            _body(
                self.resource.delete_namespaced_resource_claim(
                    name, namespace, body=options, _preload_content=False
                )
            )
        except ApiException as exc:
            error = api_error(f"delete resourceclaim {namespace}/{name}", exc)
            if isinstance(error, (errors.NotFound, errors.Conflict)):
                return
            raise error from None

    # -- nodes -----------------------------------------------------------------------------

    def fresh_node(self, name: str) -> dict[str, Any] | None:
        """The Node as stored now (a quorum read, not a cache), or None when there is none.
        Read by listing with a field selector: the operator may list nodes, not get them."""
        try:
            response = self.core.list_node(
                field_selector=f"metadata.name={name}", _preload_content=False
            )
            items = json.loads(_body(response)).get("items") or []
        except ApiException as exc:
            raise api_error(f"read node {name}", exc) from None
        return dict(items[0]) if items else None

    # -- services --------------------------------------------------------------------------

    def ensure_service(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create the service unless it exists; True when it was created."""
        name = body["metadata"]["name"]
        try:
            _body(
                self._create_service(
                    namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
                )
            )
        except ApiException as exc:
            error = api_error(f"create service {namespace}/{name}", exc)
            if isinstance(error, errors.Conflict):
                return False
            raise error from None
        return True

    # -- the custom resource ---------------------------------------------------------------

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            response = self._patch_status(
                models.GROUP,
                models.VERSION,
                namespace,
                models.PLURAL,
                name,
                {"status": status},
                field_manager=FIELD_MANAGER,
                _preload_content=False,
            )
            _body(response)
        except ApiException as exc:
            raise api_error(f"patch status of {namespace}/{name}", exc) from None

    def probe_deployments(self, namespace: str | None) -> None:
        """List at most one InferenceDeployment from the API server's watch cache (what a watch
        reads); raises the typed error while the resource is not served yet (404) or its storage
        is still initializing (429)."""
        what = f"list {models.PLURAL}"
        try:
            if namespace is None:
                response = self.custom.list_cluster_custom_object(
                    models.GROUP,
                    models.VERSION,
                    models.PLURAL,
                    limit=1,
                    resource_version="0",
                    _preload_content=False,
                )
            else:
                response = self.custom.list_namespaced_custom_object(
                    models.GROUP,
                    models.VERSION,
                    namespace,
                    models.PLURAL,
                    limit=1,
                    resource_version="0",
                    _preload_content=False,
                )
            _body(response)
        except ApiException as exc:
            raise api_error(what, exc) from None

    # -- events ----------------------------------------------------------------------------

    def event(
        self,
        involved: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool,
        component: str,
    ) -> None:
        meta = involved.get("metadata") or {}
        now = datetime.datetime.now(datetime.UTC)
        namespace = meta.get("namespace") or "default"
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{meta.get('name', 'shorthop')}.", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=component),
            reporting_component=component,
            reporting_instance=component,
            first_timestamp=now,
            last_timestamp=now,
            event_time=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            action=reason,
            count=1,
        )
        try:
            _body(
                self._create_event(
                    namespace, body, field_manager=FIELD_MANAGER, _preload_content=False
                )
            )
        except ApiException as exc:
            raise api_error("create event", exc) from None

    # -- the leader election's Lease -------------------------------------------------------

    def read_lease(
        self, namespace: str, name: str, timeout: float | None = None
    ) -> client.V1Lease | None:
        """The Lease, or None when there is none. ``timeout`` bounds the request (seconds)."""
        try:
            return self.coordination.read_namespaced_lease(
                name, namespace, _request_timeout=timeout
            )
        except ApiException as exc:
            error = api_error(f"read lease {namespace}/{name}", exc)
            if isinstance(error, errors.NotFound):
                return None
            raise error from None

    def create_lease(
        self, namespace: str, lease: client.V1Lease, timeout: float | None = None
    ) -> None:
        try:
            self.coordination.create_namespaced_lease(
                namespace, lease, field_manager=FIELD_MANAGER, _request_timeout=timeout
            )
        except ApiException as exc:
            raise api_error(f"create lease {namespace}/{lease.metadata.name}", exc) from None

    def replace_lease(
        self, namespace: str, lease: client.V1Lease, timeout: float | None = None
    ) -> client.V1Lease:
        """Write the Lease back (the Lease as stored after it); a
        :class:`~shorthop.errors.Conflict` when it changed since it was read (its
        resourceVersion). ``timeout`` bounds the request (seconds)."""
        name = lease.metadata.name
        try:
            stored: client.V1Lease = self.coordination.replace_namespaced_lease(
                name, namespace, lease, field_manager=FIELD_MANAGER, _request_timeout=timeout
            )
            return stored
        except ApiException as exc:
            raise api_error(f"replace lease {namespace}/{name}", exc) from None
