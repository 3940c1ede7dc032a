"""The scale sections of docs/benchmarks.md (the operator at 10,000 nodes), written apart from
``bench/report.py`` so that each can be regenerated on its own (``python -m bench --only
footprint``) without running, or touching, the other sections.

Each section sits between two markers, ``<!-- section NAME: begin -->`` and ``... end -->``;
:func:`splice` replaces what is between them, or appends the section when the file has none.
Every section states the machine, the load average before and after its run and the commit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from bench import common
from bench.fmt import dur, num, table
from bench.footprint import Footprint
from bench.throughput_baselines import PROCESSES, SideBySide

VERBS = ("GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE")
SHORTHOP = "shorthop (device plugin)"
RSS_TARGET_MB = 300.0  # ARCHITECTURE.md section 7: "operator RSS <= 300 MB" (10^6 bytes)
P99_TARGET_S = 5.0


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section {name}: begin -->", f"<!-- section {name}: end -->"


def splice(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` replaced by ``body`` (appended when it has none).

    >>> splice("# t\\n", "x", "## X\\n1")
    '# t\\n\\n<!-- section x: begin -->\\n## X\\n1\\n<!-- section x: end -->\\n'
    >>> splice(splice("# t\\n", "x", "old"), "x", "new").count("new"), "old" in _
    (1, False)
    """
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}\n"
    found = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", text, flags=re.S)
    if found:
        return text[: found.start()] + block + text[found.end() :]
    return text.rstrip("\n") + "\n\n" + block


def write(out: Path, sections: Mapping[str, str]) -> Path:
    """Splice ``sections`` (name -> markdown) into ``out/benchmarks.md``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmarks.md"
    text = path.read_text() if path.exists() else "# shorthop benchmarks\n"
    for name, body in sections.items():
        text = splice(text, name, body)
    path.write_text(text)
    return path


def _mib(x: float) -> str:
    return f"{x:,.0f} MiB ({_mb(x):,.0f} MB)"


def _mb(mib: float) -> float:
    return mib * 2**20 / 1e6


def _ok(value: float, target: float) -> str:
    return "yes" if value <= target else "**NO**"


def footprint(f: Footprint, command: str, load_before: str) -> str:
    """The footprint section: memory, first sync, churn, snapshot refresh and latency."""
    s = f.settings
    m = common.machine()
    refresh = f.snapshot_refresh
    churn_rate = f.churn_events / f.churn_wall_s if f.churn_wall_s else 0.0
    sizes = ", ".join(f"{kind} {size / 1024:.1f} KB" for kind, size in f.object_sizes.items())
    requests = ", ".join(f"{verb} {n:,}" for verb, n in sorted(f.requests.items()))
    quick = (
        ""
        if s.nodes >= 10_000
        else "\n**Quick run** (reduced size): these figures say nothing about the targets.\n"
    )
    probe = _probe(f)
    small, large = f.deployment_pods.count(8), f.deployment_pods.count(48)
    shapes = f"{small} of 8 pods (4 prefill + 2×2 decode, 4 GPUs per pod)" + (
        f" and, alternately, {large} of 48 pods (16 prefill + 16×2 decode)" if large else ""
    )
    return f"""## 6. The operator at {s.nodes:,} nodes: footprint (issue L)
{quick}
Written by `{command}` (bench/footprint.py, bench/report_scale.py) on {m["cpu"]}, {m["cores"]}
cores, at commit {m["commit"]}, {m["date"]}; load average (1/5/15 min) {load_before} before the
run and {f.load} after it (other work on the machine shares the cores: the CPU-seconds are the
figures least disturbed by it).

**What runs.** The operator's real code path, unchanged: `shorthop run` as the chart runs it
(kopf, leader election, paged informers with their field projection, `LiveCluster`, the
incremental snapshot, the solver, pods created and bound through the API), a process of its own
whose RSS and CPU-seconds are read from `/proc/<pid>`. It talks to `bench/loopback_api.py`, a
list/watch API served over loopback HTTP that holds {f.nodes:,} nodes and {f.pods:,} pods
(`bench/bigcluster.py`: {s.occupancy:.0%} of {f.gpus:,} GPUs taken by GPU job pods of 1-8 GPUs,
the rest daemon pods; objects as heavy as real ones, with managedFields, statuses and a node's
image list: {sizes}). {probe}

**Churn.** An hour of a busy cluster, replayed {s.speedup:g}× faster: {s.replacements_per_hour:,}
GPU job pods ending and new ones starting (4 pod events each) and every node's status updated
every 5 minutes (the kubelet's report frequency). **Deployments.** {len(f.latencies_s)}
InferenceDeployments created one after another while the same churn goes on at its real-time
rate: {shapes}; latency is from the server's ADDED event for the CR until it received the last pod's
binding, on the server's clock.

{
        table(
            ("measure", "value", "target", "met"),
            [
                (
                    "RSS after the first sync",
                    _mib(f.rss_synced_mib),
                    "300 MB",
                    _ok(_mb(f.rss_synced_mib), RSS_TARGET_MB),
                ),
                (
                    "RSS after the churn",
                    _mib(f.rss_churned_mib),
                    "300 MB",
                    _ok(_mb(f.rss_churned_mib), RSS_TARGET_MB),
                ),
                (
                    "RSS at the end (after the deployments)",
                    _mib(f.rss_end_mib),
                    "300 MB",
                    _ok(_mb(f.rss_end_mib), RSS_TARGET_MB),
                ),
                ("peak RSS (VmHWM)", _mib(f.rss_peak_mib), "", ""),
                ("first sync (informers started -> every list done)", dur(f.sync_s), "", ""),
                ("  in list calls (pages of 500)", num(f.list_calls), "", ""),
                ("process start -> synced (imports, lease, kopf)", dur(f.start_to_sync_s), "", ""),
                (
                    "churn events applied",
                    f"{f.churn_events:,} in {dur(f.churn_wall_s)} ({churn_rate:,.0f}/s)",
                    "",
                    "",
                ),
                (
                    "operator CPU for the churn",
                    f"{f.churn_cpu_s:.1f} s "
                    f"({1e3 * f.churn_cpu_s / max(1, f.churn_events):.2f} ms per event)",
                    "",
                    "",
                ),
                ("snapshot refresh per planning cycle (mean)", dur(refresh["mean_s"]), "", ""),
                (
                    "snapshot refresh p99 (histogram bucket bound)",
                    f"≤ {dur(refresh['p99_le_s'])}",
                    "",
                    "",
                ),
                ("CR create -> all pods bound, p50", dur(f.p50_s), "", ""),
                (
                    "CR create -> all pods bound, p99",
                    dur(f.p99_s),
                    dur(P99_TARGET_S),
                    _ok(f.p99_s, P99_TARGET_S),
                ),
                ("CR create -> all pods bound, max", dur(max(f.latencies_s)), "", ""),
            ],
            "llrl",
        )
    }

Requests the server received (the operator's, plus its lease): {requests}.
"""


def _probe(f: Footprint) -> str:
    p = f.probe
    if not p:
        return (
            "A loopback server rather than the local API server: see the capacity probe in "
            "`bench/footprint.py` (not run here)."
        )
    per = int(p["pods"])
    return (
        f"**Why a loopback server, not the local API server:** creating {per:,} such pods in the "
        f"local control plane (kube-apiserver + etcd, built from source) took "
        f"{p['seconds']:.1f} s and {p['cpu_s']:.1f} CPU-seconds of kube-apiserver and etcd, and "
        f"their RSS grew by {p['rss_mib']:.0f} MiB (load average {p['load']}). Extrapolated "
        f"linearly, {f.pods:,} pods would take {f.pods / per * p['seconds'] / 60:.0f} minutes "
        f"to create and {f.pods / per * p['rss_mib'] / 1024:.1f} GiB before the operator starts "
        f"(the watch cache's start-up share makes the memory an upper bound), on two cores and a "
        f"memory shared with five other engineers, for every run. The loopback server sends the "
        f"same bytes (same objects, same paging, same watch events) at a fraction of the cost; "
        f"it does not check what the real one would (admission, validation, authorization)."
    )


def _ratio(x: float) -> str:
    return f"{x:.2f}×"


def side_by_side(r: SideBySide, command: str, load_before: str) -> str:
    """The side-by-side throughput section: pods/s, CPU and requests per pod for each mode."""
    m = common.machine()
    quick = (
        ""
        if r.pods >= 512
        else "\n**Quick run** (reduced size): these figures say nothing about the goals.\n"
    )
    rows = [
        (mode.name, f"{mode.rate:.1f}", dur(mode.bound_s), dur(mode.running_s)) for mode in r.modes
    ]
    cpu_rows = []
    for mode in r.modes:
        cells = [mode.cpu_per_pod_ms(p) for p in PROCESSES]
        total = sum(c for c in cells if c is not None)
        cpu_rows.append(
            (mode.name, *("-" if c is None else f"{c:.1f}" for c in cells), f"{total:.1f}")
        )
    req_rows = []
    for mode in r.modes:
        per = mode.requests_per_pod()
        others = sum(n for verb, n in per.items() if verb not in VERBS)
        req_rows.append(
            (mode.name, *(f"{per.get(v, 0.0):.2f}" for v in VERBS), f"{others:.2f}",
             f"{sum(per.values()):.2f}")
        )  # fmt: skip
    shorthop, sts, bare = r.mode(SHORTHOP), r.mode("StatefulSets"), r.mode("bare pods")
    lines = []
    if shorthop and sts:
        ratio = shorthop.rate / sts.rate
        lines.append(
            f"`shorthop / StatefulSets: {ratio:.2f}×` (goal ≥ 1.00×: "
            f"{'met' if ratio >= 1 else '**missed**'})"
        )
    others = [m for m in r.modes if m.name.startswith("shorthop") and m is not shorthop]
    for mode in [shorthop, *others] if shorthop else others:
        label = "shorthop" if mode is shorthop else mode.name
        if sts and mode is not shorthop:
            lines.append(f"`{label} / StatefulSets: {mode.rate / sts.rate:.2f}×`")
        if bare:
            lines.append(f"`{label} / bare pods: {mode.rate / bare.rate:.2f}×`")
        op = mode.cpu_per_pod_ms("operator")
        for base in (sts, bare):
            ks = base.cpu_per_pod_ms("kube-scheduler") if base else None
            if op is not None and ks and base:
                what = "operator" if mode is shorthop else f"operator in {mode.name}"
                lines.append(
                    f"`{what} / kube-scheduler CPU per pod: {op / ks:.2f}×` "
                    f"(operator {op:.1f} ms per pod; kube-scheduler {ks:.1f} ms per pod in the "
                    f"{base.name} mode; goal ≤ 1.00×: {'met' if op <= ks else '**missed**'})"
                )
    lines += [f"`shorthop ({m})`: not measured in this run: {why}" for m, why in r.failed.items()]
    dra = (
        " and in DRA mode (the same nodes again, their GPUs published as ResourceSlices as the "
        "NVIDIA DRA driver does; per pod shorthop also creates a ResourceClaim and writes its "
        "allocation; every claim checked allocated at the end)"
        if r.mode("shorthop (DRA)")
        else ""
    )
    top = ""
    if shorthop:
        busiest = sorted(shorthop.requests.items(), key=lambda kv: -kv[1])[:8]
        top = (
            "Busiest requests in the shorthop mode, per pod: "
            + ", ".join(
                f"{verb} {res or '(none)'} {n / shorthop.pods:.2f}" for (verb, res), n in busiest
            )
            + "."
        )
    return f"""## 7. Throughput side by side: bare pods, StatefulSets, shorthop (issue L)
{quick}
Written by `{command}` (bench/throughput_baselines.py, bench/report_scale.py) on {m["cpu"]},
{m["cores"]} cores, at commit {m["commit"]}, {m["date"]}; load average (1/5/15 min)
{load_before} before the run and {r.load_after} after it (other work on the machine shares the
cores: wall-clock figures move with it, CPU-seconds much less).

**What runs.** One local control plane (kube-apiserver, etcd, kube-controller-manager,
kube-scheduler built from source; kwok for {r.nodes:,} fake GPU nodes). The same {r.pods:,} pods
of 4 GPUs ({r.pods // 8} groups of 4 prefill + 2×2 decode pods) are placed once per mode, each
mode from the same empty nodes: **bare pods** created by a client and bound by kube-scheduler;
**StatefulSets**, one per role and group with podManagementPolicy Parallel and a headless
Service each (what LeaderWorkerSet creates underneath), whose pods kube-controller-manager
creates and kube-scheduler binds; **shorthop**, one InferenceDeployment per group, the operator
(`shorthop run`, a fresh one per binding mode, leading before the clock starts) creating and
binding the pods, in device-plugin mode (`nvidia.com/gpu`, a bind is `pods/binding`){dra}. The
client creates from 16 threads; the clock runs from the first create until a pod watch (its own
process) saw every pod bound, then every pod Running.

{table(("mode", "pods/s", "first create -> all bound", "-> all Running"), rows, "lrrr")}

{chr(10).join(f"- {line}" for line in lines)}

**CPU per pod** (ms; `/proc/<pid>/stat` user + system time of each process, read before and
after the mode, divided by the pods; includes the background such as kwok's node heartbeats):

{table(("mode", *PROCESSES, "total"), cpu_rows, "l" + "r" * (len(PROCESSES) + 1))}

**API requests per pod by verb** (`apiserver_request_total` from the API server's `/metrics`,
read before and after the mode; every client, the watch that times the mode and kwok included):

{table(("mode", *VERBS, "other", "total"), req_rows, "l" + "r" * (len(VERBS) + 2))}

{top} Where the operator's CPU goes: `python -m bench.throughput_baselines NODES PODS FILE`
repeats the run with py-spy sampling the operator and prints its hottest functions.
"""
