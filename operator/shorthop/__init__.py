"""shorthop: topology-aware gang placement of disaggregated LLM inference on Kubernetes.

The functional core (``topology``, ``placement``) is pure Python and numpy; ``controller`` is the
kopf shell that talks to Kubernetes; ``api`` holds the pydantic models behind the CRD.
"""

__version__ = "0.1.0"
