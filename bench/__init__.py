"""Benchmarks behind ``make bench``: pure Python, no Kubernetes.

One module per benchmark family; each says what it measures in its docstring:

- ``topology``: label parsing, distance-index and NetworkX graph build times, incremental index
  updates, distance lookups per second (index vs NetworkX);
- ``placement``: planning latency of ``solver.solve`` vs cluster size (static-state build reported
  apart from the per-plan latency), and the speed ratio against ``networkx_reference``;
- ``networkx_reference``: the same greedy objective computed with NetworkX shortest paths;
- ``quality``: cost vs the exact optimum on small instances, cost and tier mix vs the baselines,
  and a stream of deployments that measures how each strategy strands free GPUs;
- ``plan_identity``: the solver's plans on a fixed corpus, dumped and compared between two
  commits (a speed change must leave every plan byte-identical);
- ``solve_ab``: solve time of two checkouts, one worker each, asked for one solve in turn (the
  machine's own drift falls on both; the pairwise A/B ratio is what a speed change is judged by);
- ``report``: writes ``docs/benchmarks.md`` and the PNG plots under ``docs/bench/``.

``python -m bench`` runs everything (``--quick`` for tiny sizes, ``--out DIR`` for another output
directory). Nothing here hard-codes a measured figure: every number in the report comes from the
run that wrote it.
"""
