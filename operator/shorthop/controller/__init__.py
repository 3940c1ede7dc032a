"""The imperative shell: watches the cluster, feeds the pure core, carries out its decisions.

``operator`` wires kopf (InferenceDeployment events) to the hand-written client-go parts in
``runtime`` (node and pod informers, work queue, expectations, leader election, health);
``live`` is the cluster cache that feeds ``placement.snapshot.SnapshotBuilder``; ``reconcile``
orders the API calls around ``placement.triage`` and ``placement.solver``; ``render`` and
``status`` write pods, Services and status (pure); ``binder`` binds; ``kube`` is the only module
that calls the API, translating its failures into the typed errors of ``shorthop.errors``;
``faults`` holds the chaos suite's crash points. Nothing in the core imports this package.
"""
