"""A real Kubernetes control plane built from Go sources and run as local processes.

``components`` pins what is built for each supported Kubernetes release (``pin`` writes the Go
wrapper modules from it), ``build`` compiles it into a cache outside the repository, ``certs``
makes the TLS material, ``commands`` says how each component is started, and ``cluster`` starts
and stops etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.
``python -m e2e.controlplane`` is the command-line entry (the Makefile's ``controlplane``,
``versions``, ``cluster-up`` and ``cluster-down`` call it).
"""
