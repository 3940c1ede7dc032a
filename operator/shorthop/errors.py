"""The errors shorthop raises, as types. Code decides by type, never by message text.

::

    ShorthopError                  anything shorthop raises on purpose
    ├── SpecError                  an InferenceDeployment (or CLI input) is invalid: names the field
    ├── ConfigError                a setting, preset or weight is invalid: names the setting
    ├── SnapshotError              a cluster snapshot file is not Kubernetes objects
    ├── TopologyError              a topology input (e.g. nvidia-smi text) cannot be used
    └── BindError                  binding a pod to a node failed
        └── BindConflict           ...because someone else took the resources (re-plan, not retry)

Every message says what is wrong and how to fix it. The controller maps them to kopf in one place:
``SpecError`` becomes a permanent error, conflicts and server-side trouble temporary ones.
"""

from __future__ import annotations


class ShorthopError(Exception):
    """Base class of shorthop's own errors."""


class SpecError(ShorthopError):
    """An InferenceDeployment spec (or a command-line input) is invalid.

    ``field`` is the dotted path of the offending field, e.g. ``spec.roles[decode].gpusPerPod``.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


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


class BindError(ShorthopError):
    """Binding a pod to its node failed for a reason other than a conflict."""


class BindConflict(BindError):
    """The node no longer has room (another scheduler took the GPUs, or the pod is gone/bound)."""
