"""The errors shorthop raises, as types. Code decides by type, never by message text.

::

    ShorthopError                  anything shorthop raises on purpose
    ├── SpecError                  an InferenceDeployment (or CLI input) is invalid: names the field
    ├── ConfigError                a setting, preset or weight is invalid: names the setting
    ├── SnapshotError              a cluster snapshot file is not Kubernetes objects
    ├── TopologyError              a topology input (e.g. nvidia-smi text) cannot be used
    ├── DeviceError                a ResourceSlice or ResourceClaim cannot be read: names the field
    └── KubeError                  a Kubernetes API call failed (``status``: HTTP status, 0 = none)
        ├── NoAnswer               no answer: connection refused or reset, the answer cut off
        ├── NotFound               404: the object does not exist (any more)
        ├── Conflict               409: a precondition or the object's state refused the write
        │   └── AlreadyExists      409 ``AlreadyExists``: the name is taken
        ├── Expired                410: a watch's resourceVersion is too old (list again)
        ├── Invalid                422: the object was refused by validation
        ├── Throttled              429: too many requests
        └── ServerError            5xx: the API server (or etcd) failed

``controller.kube`` turns every ``ApiException`` into the most specific of these, once, from the
HTTP status and the Status object's ``reason`` (never its message). Where the API gives no
structured distinction (a 409 on a binding says neither "already bound here" nor "bound
elsewhere"), the caller reads the object (``controller.binder``). Binding outcomes are values, not
exceptions (``binder.BindResult``). Every message says what is wrong and how to fix it.
"""

from __future__ import annotations


class ShorthopError(Exception):
    """Base class of shorthop's own errors."""


class SpecError(ShorthopError):
    """An InferenceDeployment spec (or a command-line input) is invalid.

    ``field`` is the dotted path of the offending field, e.g. ``spec.roles[1].gpusPerPod`` (the
    API server's form: list items by index).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MissingObject(SpecError):
    """The spec names an object that does not exist, e.g. a RuntimeClass: invalid until it is
    made (then valid with no change to the spec), so the operator comes back to it."""


class ConfigError(ShorthopError):
    """A setting (flag, environment variable, ConfigMap key, preset or weight) is invalid."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class SnapshotError(ShorthopError):
    """A cluster snapshot (``kubectl get nodes,pods -A -o yaml``) cannot be read."""


class TopologyError(ShorthopError):
    """A topology input, such as ``nvidia-smi topo -m`` text, cannot be parsed."""


class DeviceError(ShorthopError):
    """A ResourceSlice or ResourceClaim (Dynamic Resource Allocation) has a field of the wrong
    shape; the message names the field."""


class KubeError(ShorthopError):
    """A Kubernetes API call failed.

    ``status`` is the HTTP status (0 when no answer came), ``reason`` the Status object's
    machine-readable reason (``NotFound``, ``Conflict``, ``AlreadyExists``...; empty when the
    answer had none) and ``message`` its human-readable message.
    """

    def __init__(self, what: str, status: int, message: str, *, reason: str = "") -> None:
        self.what = what
        self.status = status
        self.message = message
        self.reason = reason
        super().__init__(f"{what}: HTTP {status} {message}".strip())

    @property
    def retriable(self) -> bool:
        """Worth trying again later: no answer, a conflict, throttling or a server error."""
        return self.status in (0, 409, 429) or self.status >= 500


class NoAnswer(KubeError):
    """No answer came: the connection was refused or reset, or the answer was cut off."""


class NotFound(KubeError):
    """404: the object does not exist (any more)."""


class Conflict(KubeError):
    """409: a precondition (uid, resourceVersion) or the object's state refused the write."""


class AlreadyExists(Conflict):
    """409 ``AlreadyExists``: an object of that name exists."""


class Expired(KubeError):
    """410: the resourceVersion a watch started from is too old; list again."""


class Invalid(KubeError):
    """422: validation refused the object."""


class Throttled(KubeError):
    """429: the API server asks to slow down."""


class ServerError(KubeError):
    """5xx: the API server or its storage failed."""
