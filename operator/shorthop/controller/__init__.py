"""The kopf shell: watches InferenceDeployments, feeds the core a snapshot, binds pods and
writes status, events and metrics."""
