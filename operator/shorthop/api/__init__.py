"""The InferenceDeployment API: pydantic models of the CRD spec and status, and CRD generation.

Imports nothing else from shorthop; the core reads it only through ``placement.request``.
"""
