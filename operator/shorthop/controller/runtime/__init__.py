"""The controller runtime shorthop writes by hand beside kopf: the parts of client-go it needs.

=================  ======================================  ==================================
module             mirrors (client-go / kube-controller)    what it does here
=================  ======================================  ==================================
``informer``       ``tools/cache``: reflector + store       list, then watch with bookmarks,
                   (the *informer*)                         relist on 410; one thread per kind
``workqueue``      ``util/workqueue``: rate-limited queue   deduplicated deployment keys, never
                                                            two workers on one key, per-key
                                                            exponential backoff, delayed adds
``expectations``   ``pkg/controller`` expectations          binds not yet seen in the cache:
                   (``controller_utils.go``)                a visit waits for them
``leader``         ``tools/leaderelection`` (Lease lock)    one active instance among replicas
``health``         the components' ``/healthz``, ``/readyz``  liveness and readiness endpoints
=================  ======================================  ==================================

Why beside kopf: kopf relays one resource's events to handlers, and shorthop uses it for exactly
that — the InferenceDeployments (``controller/operator.py`` registers one ``kopf.on.event``
handler that puts the key on the work queue, plus login, startup and cleanup hooks, all on a
``kopf.OperatorRegistry`` of its own). Placement needs more: one cluster-wide, indexed cache of
every node and every pod (pods of other schedulers take GPUs too) to freeze snapshots from, fed
at the rate the cluster changes, with each event waking only the deployments it concerns. kopf
keeps no such shared cache and would run its per-object handler machinery for every node
heartbeat and pod update; the informers read raw JSON (no model deserialisation) straight into
``controller.live``, which is what the throughput benchmark needs (docs/benchmarks.md). Because a
visit binds pods the cache has not shown yet, the queue, the expectations and the leader election
follow client-go's patterns too. kopf runs in ``standalone`` mode (no peering): :mod:`leader`
decides which replica is active, and ``commands/run.py`` starts kopf only once it leads.

The runtime knows nothing of placement; ``controller.operator`` wires it to the reconciler.
API errors reach it typed (:mod:`shorthop.errors`, translated in ``controller.kube``).
"""
