"""What a benchmark run measures: sizes, seeds, repetitions and time limits (full and quick)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What one run measures (sizes, seeds, repetitions, time limits)."""

    quick: bool
    topology_sizes: tuple[int, ...]
    latency_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    solves: int
    reference_sizes: tuple[int, ...]
    reference_limit_s: float
    exact_target: int
    exact_limit_s: float
    baseline_sizes: tuple[int, ...]
    baseline_seed: int
    stream_size: int
    streams: tuple[tuple[int, int], ...]  # (cluster mix of bench.stream.MIXES, seed)
    stream_count: int  # arrivals per stream
    stream_lifetime: tuple[int, int]  # steps a deployment stays (drawn uniformly)
    nvlink_size: int
    nvlink_occupancies: tuple[float, ...]
    # more streams, shorthop and the baselines only, reported in one table (placed, served)
    stream_survey: tuple[tuple[int, int], ...] = ()
    count_seeds: int = 0  # instances of bench.count_optimum (beyond the exact solver's reach)
    target_size: int = 10_000
    throughput_nodes: int = 1_000
    throughput_pods: int = 512

    def reference_runs(self, size: int) -> int:
        if self.quick:
            return 1
        return 5 if size <= 100 else 3 if size <= 1000 else 1


FULL = Settings(
    quick=False,
    topology_sizes=(1_000, 10_000),
    latency_sizes=(100, 1_000, 10_000),
    seeds=(0, 1, 2),
    solves=50,
    reference_sizes=(100, 1_000, 10_000),
    reference_limit_s=240.0,
    exact_target=500,
    exact_limit_s=30.0,
    baseline_sizes=(1_000, 10_000),
    baseline_seed=1,
    stream_size=300,
    streams=((0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)),
    stream_count=100,
    stream_lifetime=(20, 70),
    nvlink_size=10_000,
    nvlink_occupancies=(0.3, 0.55),
    stream_survey=tuple((mix, seed) for mix in range(3) for seed in range(3, 11)),
    count_seeds=1_500,
)
QUICK = Settings(
    quick=True,
    topology_sizes=(100, 300),
    latency_sizes=(100, 300),
    seeds=(0,),
    solves=5,
    reference_sizes=(100, 300),
    reference_limit_s=20.0,
    exact_target=4,
    exact_limit_s=5.0,
    baseline_sizes=(300,),
    baseline_seed=1,
    stream_size=60,
    streams=((0, 1),),
    stream_count=12,
    stream_lifetime=(3, 8),
    nvlink_size=300,
    nvlink_occupancies=(0.3,),
    stream_survey=((1, 2),),
    count_seeds=12,
)
