"""The kopf shell: watches InferenceDeployments, feeds the core a snapshot, binds pods, writes status."""
