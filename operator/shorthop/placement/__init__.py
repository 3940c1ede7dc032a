"""Gang placement of prefill/decode replicas on free GPUs, minimising hop distance.

Pure Python and numpy over ``topology``; never imports kopf, kubernetes or prometheus_client.
"""
