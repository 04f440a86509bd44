"""The canonical order: results depend neither on the thread count nor on how
often the table's rows are reordered, at sizes where every kernel splits
its work (the counting sort runs several chunks from 4,096 agents, rules and
searches one item per 1,024 agents, forces one per 32 x-cells)."""
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim.kernels.cpu import grid as GK
from threads import assert_bit_identical, run_script

N_AGENTS = 9000  # 3 counting-sort chunks on 3 threads, 9 rule chunks

MIXED_SCRIPT = textwrap.dedent(f"""
    import sys
    import numpy as np
    import biosim as bs
    from biosim import models

    @bs.agent_rule(reads=("diameter",), writes=("crowd",), columns={{"crowd": ("float64", 0.0)}})
    def crowding(a, ctx):
        s = 0.0
        for n in ctx.neighbours(12.0):
            s += n.diameter / (1.0 + n.distance)
        a.crowd = s
        if s > 6.0 and ctx.uniform(0) < 0.02:
            a.die()

    out, reorder = sys.argv[1], int(sys.argv[2])
    sim = bs.Simulation(bs.Box.cube(230.0), boundary="closed", dt=0.1, seed=7, reorder_every=reorder,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4))
    signal = sim.add_substance("signal", diffusion=100.0, decay=0.01, spacing=10.0)
    n = {N_AGENTS}
    rng = np.random.default_rng(4)
    cells = sim.add_agents("cells", bs.init.uniform(n // 2, sim.box, seed=3), diameter=rng.uniform(6, 9, n // 2))
    cells.behaviours += [models.GrowthDivision(growth_rate=40.0, division_diameter=9.2, volume_ratio=(0.9, 1.1)),
                         models.RandomWalk(diffusion=0.5), models.Secretion(signal, rate=2.0),
                         models.Chemotaxis(signal, speed=0.5), crowding]
    state = (rng.random(n - n // 2) < 0.05).astype(np.int8)
    people = sim.add_agents("people", bs.init.uniform(n - n // 2, sim.box, seed=5), diameter=7.0, state=state)
    people.behaviours += [models.Infection(rate=0.5, radius=10.0, recovery=0.05), models.RandomWalk(speed=1.0),
                          models.Uptake(signal, rate=0.1)]
    tissue = sim.add_agents("tissue", bs.init.uniform(300, sim.box, seed=6), diameter=9.0)
    tissue.behaviours += [models.Volume(total=600.0, nuclear=150.0),
                          models.CellCycle(("G1", "M"), (1.0, 0.5), fixed=(False, True), placement="physicell"),
                          models.Apoptosis(rate=0.05, phases=True, duration=1.0),
                          models.Necrosis(signal, threshold=1e9, rate=0.05, phases=True, lysed_duration=1.0,
                                          relative_rupture_volume=1.05, unlysed_fluid_change_rate=1.0),
                          models.Uptake(signal, rate=0.1), models.Damage(repair_rate=0.1), models.Pressure()]
    immune = sim.add_agents("immune", bs.init.uniform(300, sim.box, seed=8), diameter=8.0)
    immune.behaviours += [models.Interactions(phagocytosis={{"apoptotic": 2.0, "necrotic": 2.0, "people": 0.02}},
                                              attack={{"tissue": 1.0}}, fusion={{"immune": 2.0}}, attack_duration=2.0,
                                              transformation={{"cells": 0.01}}),
                          models.RandomWalk(speed=1.0)]
    rules = [["tissue", "pressure", "increases", "apoptosis", "0.2", "1", "2", "0"],
             ["tissue", "damage", "increases", "apoptosis", "0.5", "0.5", "1", "0"],
             ["immune", "contact with tissue", "increases", "attack tissue", "3", "1", "1", "0"],
             ["immune", "signal", "decreases", "phagocytose apoptotic cell", "0.5", "5", "2", "0"]]
    tissue.behaviours += [models.Rules(rules)]
    immune.behaviours += [models.Rules(rules)]
    sim.writers.append(bs.io.HDF5Writer(out, every=10))
    sim.run(30)
""")


@pytest.mark.slow
def test_results_do_not_depend_on_threads_or_reordering(tmp_path):
    base = run_script(tmp_path, MIXED_SCRIPT, 1, 8)
    last = base.agents(-1)
    assert len(last["uid"]) > N_AGENTS  # births outnumber deaths
    assert last["uid"].max() >= N_AGENTS + 50  # divisions happened
    assert np.any(last["state"] == 1) and np.any(last["state"] == 2)  # infection spread and recovered
    assert base.agents(0)["crowd"].max() == 0 and last["crowd"].max() > 6.0
    assert np.count_nonzero(last["type"] == 2) > 450 and last["volume"].max() > 381.0  # tissue divided and grew
    assert set(np.unique(last["death"])) == {0, 1, 2, 3}  # and died in phases
    immune, single = last["type"] == 3, last["nuclei"] == 1
    assert last["nuclei"].max() >= 2 and np.count_nonzero(last["attack_target"] >= 0) > 5  # fused and attacked
    assert np.count_nonzero(last["diameter"][immune & single] > 8.0 + 1e-9) > 3  # ate
    assert np.any((last["type"] == 0) & (last["uid"] >= 9300) & (last["uid"] < 9600))  # transformed
    assert last["pressure"].max() > 0.5  # tissue cells pressed
    assert np.ptp(last["rule_apoptosis"][last["type"] == 2]) > 0 and last["rule_attack_tissue"].max() > 1.0  # ruled
    for threads, reorder in ((2, 8), (3, 8), (2, 1), (2, 1000), (3, 1000)):
        assert_bit_identical(base, run_script(tmp_path, MIXED_SCRIPT, threads, reorder))


def test_canonical_sort_orders_cells_by_uid_whatever_the_rows_and_chunks():
    rng = np.random.default_rng(2)
    n, ncells = 20000, 700
    cell = rng.integers(0, ncells, n).astype(np.int32)
    cell[:3000] = 5  # one crowded cell: the full sort past INSERTION_MAX
    uid = rng.permutation(10 * n)[:n].astype(np.int64)
    want = np.lexsort((uid, cell))

    def canonical(cell, uid, chunks, bound=10 * n):
        counts = np.empty((chunks, ncells), dtype=np.int32)
        start = np.empty(ncells + 1, dtype=np.int64)
        blocks = np.empty((chunks, (ncells + GK.CELL_BLOCK - 1) // GK.CELL_BLOCK), dtype=np.int64)
        order = np.empty(n, dtype=np.int32)
        moved = GK.canonical_sort(cell, uid, bound, n, counts, blocks, start, order, np.empty(n, dtype=np.int64))
        return order, start, moved

    for chunks in (1, 2, 3, 7):
        order, start, moved = canonical(cell, uid, chunks)
        np.testing.assert_array_equal(order, want)
        np.testing.assert_array_equal(start, np.searchsorted(cell[want], np.arange(ncells + 1)))
        assert moved > 0
    # uids too large to share a 64-bit key with the cell: the same order
    order, start, moved = canonical(cell, uid, 2, bound=2**62)
    np.testing.assert_array_equal(order, want)
    # rows already in canonical order do not move; rows in cell order but not
    # in uid order within a cell do
    order, _, moved = canonical(cell[want], uid[want], 2)
    assert moved == 0 and np.array_equal(order, np.arange(n))
    swapped = want.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # two agents of one cell
    assert cell[swapped[0]] == cell[swapped[1]]
    order, _, moved = canonical(cell[swapped], uid[swapped], 2)
    assert moved > 0 and np.array_equal(swapped[order], want)


def test_sort_memory_is_bounded_by_cells_and_agents():
    for n, ncells, threads in ((10**6, 2 * 10**6, 64), (10**6, 3 * 10**5, 64), (10, 4096, 16), (5000, 10, 3)):
        chunks = GK.sort_chunks(n, ncells, threads)
        assert 1 <= chunks <= threads
        assert chunks * ncells <= 2 * (n + ncells)


def test_reorder_every_is_validated():
    for bad in (0, -3):
        with pytest.raises(ValueError, match="reorder_every must be an integer >= 1"):
            bs.Simulation(bs.Box.cube(10.0), reorder_every=bad)
    for bad in (2.5, "8", True):
        with pytest.raises(TypeError, match="reorder_every must be an integer"):
            bs.Simulation(bs.Box.cube(10.0), reorder_every=bad)
    assert bs.Simulation(bs.Box.cube(10.0), reorder_every=3)._grid.reorder_every == 3
