"""Cluster topology: node labels -> typed node descriptions -> NetworkX graph -> O(1) index.

Pure Python and numpy; never imports kopf, kubernetes or prometheus_client.
"""
