"""The ``devices`` of ``shorthop plan``'s assignments (the contract's DRA extension), as a property
over clusters the code has not seen: pools split over several slices, obsolete generations,
incomplete pools, MIG devices, tainted devices, other drivers' slices, device names out of PCI
order, and claims in any state naming known and unknown devices.

For every feasible plan, an assignment on a DRA node lists one ``{driver, pool, device}`` per GPU,
in the order of ``gpus``, where index ``i`` is the ``i``-th whole GPU of the pool's newest complete
generation in PCI bus order (an oracle computed here from the objects, not by the code under
test); no device is planned twice, none that any claim's allocation names, none that is tainted
and none of an incomplete pool; assignments on device-plugin nodes have no ``devices``."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from shorthop.placement import placers, snapshot
from shorthop.topology import fake

from tests import builders
from tests.hypothesis_profiles import examples

DRIVER = builders.DRIVER
BUSES = tuple(f"0000:{b:02x}:00.0" for b in range(0x10, 0xF0, 0x0B))
TAINT = [{"key": "gpu.nvidia.com/unhealthy", "effect": "NoSchedule"}]
PLACER = next(p for p in placers.all_placers() if p.name == "shorthop")


@st.composite
def dra_pool(draw: Any, node: str) -> tuple[list[dict[str, Any]], list[str], set[str], bool]:
    """One node's slices; with the GPU order the oracle expects (device names by PCI bus order),
    the tainted devices and whether the pool is complete."""
    gpus = draw(st.integers(1, 8))
    buses = draw(st.permutations(BUSES).map(lambda b: list(b[:gpus])))
    minors = draw(st.permutations(range(gpus)))
    tainted = draw(st.sets(st.integers(0, gpus - 1), max_size=2))
    devices = [
        builders.gpu_device(
            i,
            name=f"gpu-{minors[i]}",
            uuid=f"GPU-{node}-{i}",
            bus=buses[i],
            numa=draw(st.sampled_from([None, 0, 1])),
            root=draw(st.sampled_from([None, "pci0000:00", "pci0000:80"])),
            taints=TAINT if i in tainted else None,
        )
        for i in range(gpus)
    ]
    if draw(st.booleans()):  # a MIG device: not a whole GPU, never planned
        devices.append(builders.gpu_device(0, name="gpu-0-mig-1g.10gb-0", kind="mig"))
    devices = draw(st.permutations(devices))
    parts = draw(st.integers(1, min(3, len(devices))))
    generation = draw(st.integers(1, 3))
    slices = [
        builders.resource_slice(
            node,
            devices[p::parts],
            name=f"{node}-g{generation}-{p}",
            generation=generation,
            count=parts,
        )
        for p in range(parts)
    ]
    complete = True
    if parts > 1 and draw(st.integers(0, 5)) == 0:
        slices.pop()  # the driver is replacing its slices: nothing is handed out
        complete = False
    if generation > 1 and draw(st.booleans()):  # an obsolete generation, other devices
        old = [builders.gpu_device(i, name=f"gpu-{i + 50}") for i in range(2)]
        slices.append(
            builders.resource_slice(node, old, name=f"{node}-old", generation=generation - 1)
        )
    if draw(st.booleans()):  # another driver's slice on the same node
        slices.append(
            builders.resource_slice(
                node, [builders.gpu_device(0)], name=f"{node}-nic", driver="nic.example.com"
            )
        )
    whole = [d for d in devices if d["attributes"]["type"]["string"] == "gpu"]
    order = [
        d["name"]
        for d in sorted(
            whole, key=lambda d: d["attributes"]["resource.kubernetes.io/pciBusID"]["string"]
        )
    ]
    bad = {d["name"] for d in whole if d.get("taints")}
    return slices, order, bad, complete


@st.composite
def clusters(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    nodes, published, order, bad, incomplete = [], [], {}, set(), set()
    for i in range(n):
        name = f"d{i}"
        slices, names, tainted, complete = draw(dra_pool(name))
        nodes.append(builders.dra_node(name, gpus=len(names), rack=f"r{i % 2}"))
        published += slices
        order[name] = names
        bad |= {(name, d) for d in tainted}
        if not complete:
            incomplete.add(name)
    plugin = [builders.node_object(f"p{i}", "hgx", 8) for i in range(draw(st.integers(0, 2)))]
    known = [(node, d) for node, names in order.items() for d in names]
    device_refs = st.one_of(
        st.sampled_from(known),
        st.tuples(st.sampled_from(["d0", "nowhere"]), st.sampled_from(["gpu-42", "gpu-0"])),
    )
    claims = []
    for c in range(draw(st.integers(0, 6))):
        held = draw(st.lists(device_refs, max_size=3, unique=True))
        state = draw(st.sampled_from(["allocated", "pending", "deleting", "other-driver"]))
        claims.append(
            builders.claim(
                f"c{c}",
                held if state != "pending" else None,
                deleting=state == "deleting",
                driver="nic.example.com" if state == "other-driver" else DRIVER,
                count=max(1, len(held)),
            )
        )
    busy = {  # every allocated device of the driver, whatever the claim's state
        (r["pool"], r["device"])
        for c in claims
        for r in c.get("status", {}).get("allocation", {}).get("devices", {}).get("results", [])
        if r["driver"] == DRIVER
    }
    return {
        "nodes": nodes + plugin,
        "slices": draw(st.permutations(published)),
        "claims": claims,
        "order": order,
        "busy": busy,
        "bad": bad,
        "incomplete": incomplete,
    }


@settings(max_examples=examples(150))
@given(clusters(), builders.small_requests())
def test_devices_follow_the_gpu_order_and_are_free(case: dict[str, Any], req: Any) -> None:
    snap = snapshot.build(
        case["nodes"], [], fake.CONFIG, resource_slices=case["slices"], claims=case["claims"]
    )
    plan = PLACER.place(snap, req)
    doc = plan.to_json(snap.node_devices)
    planned: list[tuple[str, str]] = []
    for a in doc["assignments"]:
        if a["node"] not in case["order"]:
            assert "devices" not in a, a
            continue
        assert a["node"] not in case["incomplete"], a
        names = case["order"][a["node"]]
        assert a["devices"] == [
            {"driver": DRIVER, "pool": a["node"], "device": names[g]} for g in a["gpus"]
        ]
        planned += [(a["node"], names[g]) for g in a["gpus"]]
    assert len(planned) == len(set(planned))
    assert not set(planned) & case["busy"]
    assert not set(planned) & case["bad"]
