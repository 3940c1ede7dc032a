"""The node agent (``shorthop node-agent``): publishes each GPU node's exact intra-node topology.

Runs on every GPU node (the chart's optional DaemonSet). ``reader`` asks NVML (``nvidia-ml-py``)
and sysfs, falling back to ``nvidia-smi topo -m``; ``topology.hardware`` turns the answers into
the matrix; ``publisher`` annotates the agent's own Node (``shorthop.io/nvidia-smi-topo`` and
``shorthop.io/gpu-topology``) when they change; ``kube`` holds its three API calls; ``probes``
serves its health endpoints. ``fakenvml`` is a recorded NVML for tests. Sits beside
``shorthop.controller`` (never imports it) and above ``topology``.
"""

from shorthop.agent.publisher import Agent, Timing, desired, summary
from shorthop.agent.reader import ReadError, Result, read

__all__ = ["Agent", "ReadError", "Result", "Timing", "desired", "read", "summary"]
