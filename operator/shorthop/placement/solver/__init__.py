"""shorthop's placer: gang placement of an InferenceDeployment that minimises hop distance.

Algorithm overview
------------------
Phase 1 (scope). If the deployment has a required or preferred scope, candidate domains of that
tier with enough free GPUs are tried, best fit first (fewest free GPUs that suffice); the best
feasible plan among them wins. A preferred scope that fits nowhere falls back to the whole cluster.

Phase 2 (greedy, one replica at a time, largest replicas first). For a replica of ``P`` pods of
``q`` GPUs:

  a. *capacity*: how many such pods every usable node can take (free GPUs, CPU, memory, pod
     count, taints vs tolerations), rolled up the domain tree with numpy;
  b. *single-node candidates*: every node that fits all ``P`` pods is scored at once: the
     cheapest GPU subset from precomputed per-class tables (``subsets``), the traffic cost to the
     replica's already placed peers (vectorised over candidates), a look-ahead for its peers not
     placed yet, and the GPUs it would leave free (best fit);
  c. *multi-node candidates*: for NVLink domains and then network levels, finest first, domains
     that fit are filled Kueue-style (fewest children, largest first; the last child best fit,
     nearest to peers) and scored exactly; coarser levels are skipped once their lower bound
     exceeds the best cost found;
  d. the lexicographically best candidate (intra-replica cost, traffic cost, look-ahead, leftover
     GPUs, vertex id) is committed.

Phase 3 (refinement). Local search: each replica in turn, then each replica with all its peers,
is lifted out and placed again now that all its peers are known; the move is kept when the
(intra, traffic) cost falls. At most ``refine.REFINE_PASSES`` passes. Small instances are then
searched exhaustively (``search``); medium ones (at most ``medium.MEDIUM_ROWS`` usable nodes with
free GPUs) get starts under every order of whole roles, swaps between replicas of two roles and
evacuations of one node's replicas (``medium``), then, where at most ``neighbourhood.MAX_ROWS``
nodes are in play, every set of two (then three) nodes placed again by the exhaustive search with
everything else staying (``neighbourhood``), each kept only when cheaper.

Phase 4 (verdict). Either every pod is placed (gang) and the plan is scored by ``objective``, or
the plan is infeasible with a reason naming the field and the numbers (``explain``).

Strategies (``Strategy``): ``COST`` is the search above. When a replica does not fit, greedy runs
again under ``PACK`` (largest pods first, best fit first), then ``FIRST_FIT`` (replicas in id order,
pods on the first node with room). A plan is never worse than first-fit's: first-fit's placement is
refined too and the cheaper kept. When all three fail on a small instance, ``rescue`` backtracks
over the ways to spread the pods (any feasible placement), and that plan is refined and searched.

Deterministic: no randomness, and ties always break by vertex/row id.

Modules, by phase
-----------------
``state``      the one mutable state of a run (free bitsets, counts, headroom, replicas, peers),
               ``Strategy``, ``Candidate``; commit / lift / restore; costs of what is placed
``capacity``   2a: pods per node and per domain, kept up to date on every commit
``candidates`` 2b: single-node candidates, vectorised per node class
``fill``       2c: multi-node candidates, Kueue-style domain fill
``lookahead``  2b/2c: the estimate for peers not placed yet (one implementation for both)
``score``      2c/2d: one candidate scored exactly; the order candidates compare in
``greedy``     2: the order of replicas, one replica's best candidate, first-fit
``refine``     3: local search
``search``     3c: exhaustive search on small instances (branch and bound, within a budget)
``universe``   3c/3e: what one search may change (``Scope``): its GPUs, distances, twins
``medium``     3d: medium instances: every order of whole roles; swaps; evacuations
``swap``       3d: two replicas of different roles trade GPUs (every trade costed at once)
``neighbourhood`` 3e: a few nodes at a time placed again by the search, the rest staying
``rescue``     2e: any feasible placement on a small instance where every strategy failed
``explain``    4: reasons for an infeasible replica
``run``        1 and 4, the strategies, and :func:`solve`

Callers use :func:`solve` only (``placement.placers``, the controller, ``shorthop plan``,
benchmarks). Pure Python and numpy over ``topology``: no I/O, clock, logging or randomness; never
imports ``controller``, kopf or kubernetes; never changes the snapshot it is given.
"""

from __future__ import annotations

from shorthop.placement.solver.run import solve
from shorthop.placement.solver.state import Fixed, Strategy

__all__ = ["Fixed", "Strategy", "solve"]
