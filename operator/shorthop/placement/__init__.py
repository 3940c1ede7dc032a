"""Gang placement of prefill/decode replicas on free GPUs, minimising hop distance.

``snapshot`` holds the per-cycle free-GPU bitsets and the one incremental builder of them;
``occupancy`` decides which GPUs (and host ports) an existing pod holds; ``triage`` decides, per
deployment, what to keep, replace or place (pure, over the snapshot); ``constraints``,
``filters``, ``admission`` and ``ignored`` read the pod template's scheduling rules;
``request`` turns a spec into what to place
(the only module of the core that reads ``shorthop.api``); ``objective`` is the cost every placer
is judged by; ``tree`` is the domain tree over an index; ``subsets`` the per-node-class tables of
cheapest GPU subsets; ``solver`` (a package, by phase) is shorthop's placer; ``placers`` the
``Placer`` seam and the baselines; ``exact`` a branch-and-bound optimum for small instances;
``plan`` the result values.

Called by the controller, ``views``, commands, tests and benchmarks. Pure Python and numpy over
``topology``: no I/O, clock or randomness outside a seed; never imports kopf, kubernetes or
prometheus_client, nor anything above it.
"""
