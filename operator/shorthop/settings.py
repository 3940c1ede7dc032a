"""Operator settings: one frozen pydantic model, read once in ``cli.py`` and passed down.

Sources, lowest to highest precedence: defaults, a YAML file (``--config``, typically a mounted
ConfigMap key ``config.yaml``), environment variables ``SHORTHOP_*``, command-line flags. The
YAML file uses the same camelCase names as below::

    topology:
      preset: plain                  # or topograph | aws | gke | oci
      levels:                        # optional: custom levels, coarse to fine
      - {name: zone, keys: [topology.kubernetes.io/zone]}
      nvlinkDomainKeys: [nvidia.com/gpu.clique]
      weights: {nvlink: 10, finestUplink: 100}
    schedulerName: shorthop
    servicePort: 8000                # each role's headless Service (a role's servicePort wins)
    namespaces: []                   # empty: all namespaces
    metricsPort: 9090
    healthPort: 8080
    leaseName: shorthop-leader
    leaseNamespace: shorthop-system  # default: $POD_NAMESPACE, else "default"
    identity: my-pod                 # default: $POD_NAME, else the host name
    logFormat: json                  # or text
    leaseDurationSeconds: 15         # a standby takes over after this long without a renewal
    renewIntervalSeconds: 2          # the leader renews this often (client-go's retry period);
                                     # it steps down after 2/3 of the duration without one
    faults: ""                       # crash points for fault-injection tests (controller.faults)
    dra:                             # Dynamic Resource Allocation (exact GPUs)
      enabled: true                  # where the server serves resource.k8s.io/v1
      driver: gpu.nvidia.com         # whose ResourceSlices publish GPUs
      deviceClass: gpu.nvidia.com    # the class shorthop's claims request

The environment is read here and in ``cli.py`` only (``load``'s ``environ``), never at import
time or deeper in the package.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from shorthop.errors import ConfigError
from shorthop.topology import levels as topology_levels
from shorthop.topology import slices
from shorthop.topology.links import Weights

ENV_PREFIX = "SHORTHOP_"


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class LevelSetting(_Model):
    name: str
    keys: list[str] = Field(min_length=1)


class TopologySettings(_Model):
    preset: str = topology_levels.DEFAULT_PRESET
    levels: list[LevelSetting] | None = None
    nvlink_domain_keys: list[str] | None = None
    weights: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in topology_levels.PRESETS:
            known = ", ".join(sorted(topology_levels.PRESETS))
            raise ValueError(f"unknown preset {value!r}; choose one of {known}")
        return value

    def config(self) -> topology_levels.TopologyConfig:
        """The topology configuration these settings describe (validated)."""
        base = topology_levels.preset(self.preset)
        level_list = base.levels
        if self.levels is not None:
            level_list = tuple(
                topology_levels.NetworkLevel(lv.name, tuple(lv.keys)) for lv in self.levels
            )
        weights = Weights.from_mapping({_snake(k): v for k, v in self.weights.items()})
        return topology_levels.TopologyConfig(
            preset=self.preset if self.levels is None else "custom",
            levels=level_list,
            nvlink_domain_keys=tuple(self.nvlink_domain_keys or base.nvlink_domain_keys),
            weights=weights,
        )


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class DraSettings(_Model):
    """Dynamic Resource Allocation: on nodes whose GPUs the driver publishes in ResourceSlices,
    shorthop allocates each pod a ResourceClaim of ``device_class`` with exactly the planned
    devices. ``enabled`` False (or a server that does not serve ``resource.k8s.io/v1``) watches
    no slices or claims: only device-plugin nodes are used."""

    enabled: bool = True
    driver: str = Field(default=slices.DEFAULT_DRIVER, pattern=_DNS_SUBDOMAIN, max_length=63)
    device_class: str = Field(default=slices.DEFAULT_DRIVER, pattern=_DNS_SUBDOMAIN, max_length=253)


class Settings(_Model):
    topology: TopologySettings = Field(default_factory=TopologySettings)
    scheduler_name: str = Field(default="shorthop", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    service_port: int = Field(default=8000, ge=1, le=65535)
    namespaces: list[str] = Field(default_factory=list)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    health_port: int = Field(default=8080, ge=0, le=65535)
    lease_name: str = "shorthop-leader"
    lease_namespace: str = "default"  # load() defaults it to $POD_NAMESPACE
    identity: str = Field(default_factory=socket.gethostname)  # load(): $POD_NAME first
    log_format: Literal["json", "text"] = "json"
    lease_duration_seconds: float = Field(default=15.0, gt=1)
    renew_interval_seconds: float = Field(default=2.0, gt=0)
    faults: str = ""  # "point:count,..." for fault-injection tests; empty: none
    dra: DraSettings = Field(default_factory=DraSettings)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


_ENV: dict[str, tuple[str, ...]] = {
    "PRESET": ("topology", "preset"),
    "SCHEDULER_NAME": ("schedulerName",),
    "SERVICE_PORT": ("servicePort",),
    "NAMESPACES": ("namespaces",),
    "METRICS_PORT": ("metricsPort",),
    "HEALTH_PORT": ("healthPort",),
    "LEASE_NAME": ("leaseName",),
    "LEASE_NAMESPACE": ("leaseNamespace",),
    "IDENTITY": ("identity",),
    "LOG_FORMAT": ("logFormat",),
    "FAULTS": ("faults",),
    "DRA_ENABLED": ("dra", "enabled"),
    "DRA_DRIVER": ("dra", "driver"),
    "DRA_DEVICE_CLASS": ("dra", "deviceClass"),
}
# Set by the Downward API in the chart; defaults below any explicit setting.
_POD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "POD_NAMESPACE": ("leaseNamespace",),
    "POD_NAME": ("identity",),
}


def _has(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False
        data = data[key]
    return True


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def load(
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> Settings:
    """Merge file, environment and flag values into validated :class:`Settings`.

    Raises
    ------
    ConfigError
        Naming the file, variable or setting at fault and what is allowed.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "settings"
    origin: dict[tuple[str, ...], str] = {}  # setting path -> where its value came from
    config_file = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        source = config_file
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {config_file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(config_file, f"is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(config_file, "must be a YAML mapping of settings")
        data = loaded
    for variable, path in _POD_DEFAULTS.items():
        value = environ.get(variable)
        if value and not _has(data, path):
            _set(data, path, value)
            origin[path] = variable
    for suffix, path in _ENV.items():
        value = environ.get(ENV_PREFIX + suffix)
        if value:
            parsed: Any = (
                [v.strip() for v in value.split(",") if v.strip()]
                if suffix == "NAMESPACES"
                else value
            )
            _set(data, path, parsed)
            origin[path] = ENV_PREFIX + suffix
    for path, value in (overrides or {}).items():
        if value is not None:
            _set(data, path, value)
            origin[path] = "--" + "".join(f"-{c.lower()}" if c.isupper() else c for c in path[-1])
    try:
        settings = Settings.model_validate(data)
        settings.topology.config()
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        where = ".".join(loc)
        named = origin.get(loc)
        raise ConfigError(
            f"{named} ({where})" if named else f"{source}: {where}", first["msg"]
        ) from None
    deadline = settings.lease_duration_seconds * 2 / 3
    if settings.renew_interval_seconds >= deadline:
        named = origin.get(("renewIntervalSeconds",))
        raise ConfigError(
            f"{named} (renewIntervalSeconds)" if named else f"{source}: renewIntervalSeconds",
            f"{settings.renew_interval_seconds:g} s is not shorter than the renew deadline "
            f"({deadline:g} s, two thirds of leaseDurationSeconds): the leader would step down "
            "between two renewals; lower it (default 2) or raise leaseDurationSeconds",
        )
    return settings
