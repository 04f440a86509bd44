"""Neurites: BioDynaMo's neuroscience unit tests (test/unit/neuroscience,
neuron_soma_test.cc and mechanical_interaction_test.cc) ported, with the
unit mapping BioDynaMo step = 0.01 h = 0.6 min: a BioDynaMo call
``ElongateTerminalEnd(speed, dir)`` moves the tip by speed x 0.01 µm, here
``sim.neurites.elongate(uid, speed * 0.01, dir)``; ``Retract(speed)`` the
same; ``Simulate(1)`` is ``sim.run(1)`` with dt = 0.6 min (the default
NeuriteMechanics damping 0.6 min moves a point mass by the force per step,
as BioDynaMo).  BioDynaMo's abs_error is 1e-9 (double)."""
import numpy as np
import pytest

import biosim as bs
from biosim import models

TOL = 1e-9


def neuron(soma_diameter=20.0, directions=((0, 0, 1),), neurite_diameter=2.0, mechanics=None, somata=((0, 0, 0),),
           soma_diameters=None, max_length=15.0):
    """A simulation with somata and one neurite per direction from the
    first soma (BioDynaMo's NeuronSoma + ExtendNewNeurite)."""
    sim = bs.Simulation(bs.Box((-400, -400, -400), (400, 400, 400)), dt=0.6, mechanics=mechanics, seed=7)
    d = soma_diameters if soma_diameters is not None else [soma_diameter] * len(somata)
    soma = sim.add_agents("soma", np.array(somata, float), diameter=np.array(d, float))
    first = np.repeat(soma.uids[:1], len(directions))
    sim.add_neurites(first, np.array(directions, float), diameter=neurite_diameter,
                     mechanics=bs.NeuriteMechanics(max_length=max_length))
    return sim


def col(sim, name, uid):
    return sim.agents[name][sim.neurites.row_of()[uid]]


def elements(sim):
    return sim.neurites.rows().size


def tip(sim):
    rows = sim.neurites.rows()
    return int(sim.agents.uid[rows].min())


def grow(sim, uid, steps, direction, speed=10.0):
    N = sim.neurites
    for _ in range(steps):
        N.elongate(uid, speed * 0.01, direction)
        N.discretize()


def test_extend_new_neurite_sits_on_the_soma_surface_at_rest():
    sim = neuron()
    e = tip(sim)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[e]], [0, 0, 10.5], atol=TOL)
    np.testing.assert_allclose(col(sim, "distal", e), [0, 0, 11], atol=TOL)
    np.testing.assert_allclose(col(sim, "axis", e), [0, 0, 1], atol=TOL)
    assert np.pi / 4 * col(sim, "diameter", e) ** 2 * col(sim, "length", e) == pytest.approx(np.pi, abs=TOL)
    assert col(sim, "length", e) == 1 and col(sim, "tension", e) == 0
    assert col(sim, "spring_constant", e) == 10 and col(sim, "resting_length", e) == 1
    assert col(sim, "daughter_left", e) == -1 and col(sim, "daughter_right", e) == -1
    assert col(sim, "mother", e) == sim.populations["soma"].uids[0] and col(sim, "branch_order", e) == 0
    assert len(sim.agents) == 2


def test_elongation_splits_at_step_140_into_elements_of_13_5_and_7_5():
    sim = neuron()
    e = tip(sim)
    grow(sim, e, 139, (0, 0, 1))
    assert len(sim.agents) == 2
    grow(sim, e, 1, (0, 0, 1))
    assert len(sim.agents) == 3
    grow(sim, e, 60, (0, 0, 1))
    np.testing.assert_allclose(col(sim, "distal", e), [0, 0, 31], atol=TOL)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[e]], [0, 0, 27.25], atol=TOL)
    np.testing.assert_allclose(col(sim, "axis", e), [0, 0, 7.5], atol=TOL)
    assert col(sim, "length", e) == pytest.approx(7.5, abs=TOL)
    assert col(sim, "resting_length", e) == pytest.approx(7.5, abs=TOL)
    assert np.pi / 4 * 4 * col(sim, "length", e) == pytest.approx(23.561944901923749, abs=TOL)
    p = col(sim, "mother", e)
    np.testing.assert_allclose(col(sim, "distal", p), [0, 0, 23.5], atol=TOL)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[p]], [0, 0, 16.75], atol=TOL)
    assert col(sim, "length", p) == pytest.approx(13.5, abs=TOL)
    assert col(sim, "resting_length", p) == pytest.approx(13.5, abs=TOL)
    assert col(sim, "tension", p) == pytest.approx(0, abs=TOL)
    assert col(sim, "daughter_left", p) == e and col(sim, "daughter_right", p) == -1
    assert col(sim, "mother", p) == sim.populations["soma"].uids[0]
    assert len(sim.agents) == 3


def test_partial_and_total_retraction():
    sim = neuron()
    e = tip(sim)
    grow(sim, e, 200, (0, 0, 1))
    for _ in range(140):
        sim.neurites.retract(e, 0.1)
        sim.neurites.discretize()
    np.testing.assert_allclose(col(sim, "distal", e), [0, 0, 17], atol=TOL)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[e]], [0, 0, 13.5], atol=TOL)
    assert col(sim, "length", e) == pytest.approx(7, abs=TOL)
    assert col(sim, "resting_length", e) == pytest.approx(7, abs=TOL)
    assert np.pi / 4 * 4 * col(sim, "length", e) == pytest.approx(21.991148575129266, abs=TOL)
    assert col(sim, "mother", e) == sim.populations["soma"].uids[0]
    assert len(sim.agents) == 2
    for _ in range(69):
        sim.neurites.retract(e, 0.1)
    assert len(sim.agents) == 2
    sim.neurites.retract(e, 0.1)  # the 210th retraction removes the neurite
    assert len(sim.agents) == 1 and sim.neurites.rows().size == 0


def branched():
    sim = neuron()
    e = tip(sim)
    grow(sim, e, 200, (0, 0.5, 0.5))
    (b,) = sim.neurites.branch(e, direction=(0, 1, 0))
    return sim, e, b


def test_branch_splits_the_element_and_grows_a_right_daughter_from_its_middle():
    sim, e, b = branched()
    np.testing.assert_allclose(col(sim, "distal", e), [0, 14.142135623730928, 25.142135623730923], atol=TOL)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[e]],
                               [0, 12.881717786265909, 23.856717786265904], atol=TOL)
    np.testing.assert_allclose(col(sim, "axis", e), [0, 2.5208356749300371, 2.5708356749300378], atol=TOL)
    assert col(sim, "length", e) == pytest.approx(3.6005289288510043, abs=TOL)
    assert col(sim, "resting_length", e) == pytest.approx(3.6005289288510043, abs=TOL)
    assert np.pi / 4 * 4 * col(sim, "length", e) == pytest.approx(11.311395231915842, abs=TOL)
    assert col(sim, "daughter_left", e) == -1 and col(sim, "branch_order", e) == 0
    p = col(sim, "mother", e)
    np.testing.assert_allclose(col(sim, "distal", p), [0, 11.621299948800891, 22.571299948800885], atol=TOL)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[p]],
                               [0, 10.360882111335872, 21.285882111335866], atol=TOL)
    assert col(sim, "length", p) == pytest.approx(3.6005289288510043, abs=TOL)
    assert col(sim, "daughter_left", p) == e and col(sim, "daughter_right", p) == b
    assert col(sim, "mother", col(sim, "mother", p)) == sim.populations["soma"].uids[0]  # the first element's
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[b]],
                               [0, 12.121299948800891, 22.571299948800885], atol=TOL)
    np.testing.assert_allclose(col(sim, "axis", b), [0, 1, 0], atol=TOL)
    assert col(sim, "branch_order", b) == 1 and col(sim, "diameter", b) == 2 and col(sim, "length", b) == 1
    assert col(sim, "tension", b) == 0 and col(sim, "resting_length", b) == 1
    assert len(sim.agents) == 5


def branched_and_grown(tip_direction, lengths, retracted, steps):
    """BioDynaMo's daughter-retraction set-up: after the branch, 100 steps of
    growth of the tip and the branch (checked against ``lengths``), then
    ``steps`` retractions of ``retracted`` ("tip" or "branch")."""
    sim, e, b = branched()
    for _ in range(100):
        grow(sim, e, 1, tip_direction)
        grow(sim, b, 1, (0, 1, 0.5))
    assert [col(sim, "length", e), col(sim, "length", b)] == pytest.approx(lengths, abs=1e-9)
    for _ in range(steps):
        sim.neurites.retract(e if retracted == "tip" else b, 0.1)
        sim.neurites.discretize()
    return sim, e, b


def test_right_daughter_retraction():
    sim, e, b = branched_and_grown((0, -0.5, 1), [11.6792669065954, 10.9036023322569], "branch", 40)
    assert col(sim, "length", e) == pytest.approx(11.6792669065954, abs=1e-9)
    assert col(sim, "length", b) == pytest.approx(6.90360233225694, abs=1e-9)
    np.testing.assert_allclose(col(sim, "distal", b), [0, 17.9175034106028, 25.4028272980485], atol=1e-9)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[b]],
                               [0, 14.769401679701861, 23.987063623424685], atol=1e-9)
    np.testing.assert_allclose(col(sim, "axis", b), [0, 6.29620346180194, 2.8315273492476], atol=1e-9)
    assert col(sim, "tension", b) == 0 and col(sim, "branch_order", b) == 1
    assert len(sim.agents) == 5
    p = col(sim, "mother", e)
    while col(sim, "daughter_right", p) != -1:  # RightDaughterTotalRetraction
        sim.neurites.retract(b, 0.1)
        sim.neurites.discretize()
    assert col(sim, "length", e) == pytest.approx(11.6792669065954, abs=1e-9)
    assert len(sim.agents) == 4 and col(sim, "daughter_left", p) == e


def test_left_daughter_retraction():
    sim, e, b = branched_and_grown((-0.5, 0.5, 1), [13.2486948956586, 10.903602332257], "tip", 10)
    assert col(sim, "length", e) == pytest.approx(12.2486948956586, abs=1e-9)
    np.testing.assert_allclose(col(sim, "distal", b), [0, 21.5655718588001, 27.0434359038005], atol=1e-9)
    np.testing.assert_allclose(col(sim, "axis", b), [0, 9.9442719099992, 4.4721359549996], atol=1e-9)
    assert len(sim.agents) == 5


def test_retracting_every_terminal_element_takes_the_neuron_back_to_its_soma():
    sim = neuron(directions=((1, 0, 0),))
    e = tip(sim)
    grow(sim, e, 200, (1, 1, 0))
    (b,) = sim.neurites.branch(e)
    for _ in range(100):
        grow(sim, e, 1, (0, 0, 1))
        grow(sim, b, 1, (0, 1, 0))
    assert len(sim.agents) > 4
    t = sim.agents
    for _ in range(1000):
        rows = sim.neurites.rows()
        if rows.size == 0:
            break
        rows = rows[t["daughter_left"][rows] < 0]
        sim.neurites.retract(t.uid[rows], 0.1)
        sim.neurites.discretize()
    assert len(sim.agents) == 1


def test_bifurcate_grows_two_daughters_of_length_one():
    sim = neuron()
    e = tip(sim)
    left, right = sim.neurites.bifurcate(e, directions=((0, 1, 1), (1, 1, 0)))
    (l,), (r,) = left, right
    assert col(sim, "daughter_left", e) == l and col(sim, "daughter_right", e) == r
    np.testing.assert_allclose(col(sim, "distal", l), [0, 0.707106781186547, 11.7071067811865], atol=1e-9)
    np.testing.assert_allclose(sim.agents.position[sim.neurites.row_of()[l]],
                               [0, 0.353553390593274, 11.3535533905933], atol=1e-9)
    np.testing.assert_allclose(col(sim, "distal", r), [0.707106781186547, 0.707106781186547, 11], atol=1e-9)
    for u in (l, r):
        assert col(sim, "length", u) == pytest.approx(1) and col(sim, "branch_order", u) == 1
        assert col(sim, "mother", u) == e and col(sim, "tension", u) == 0
    assert len(sim.agents) == 4


SWC_EXPORT = ("1 1 0 0 0 3 -1\n"
              "2 4 1 0 0 1 1\n"
              "3 4 2 0 0 1 2\n"
              "4 4 3 1 0 1 3\n"
              "5 4 3 -1 0 1 3\n"
              "6 4 0 0 1 2 1\n"
              "7 4 0.5 0 2 2 6\n"
              "8 4 -0.5 0 2 2 6\n"
              "9 4 -1 0 3 2 8\n"
              "10 4 0 0 3 2 8\n")


def test_swc_export_matches_biodynamos_golden_file(tmp_path):
    sim = bs.Simulation(bs.Box((-10, -10, -10), (10, 10, 10)), dt=0.6, mechanics=None)
    soma = sim.add_agents("soma", [[0, 0, 0]], diameter=6.0)
    sim.add_neurites(soma, (1, 0, 0), diameter=2.0, swc_type=4)
    N = sim.neurites
    a = tip(sim)
    (n2,) = N.split(a, 0.5)  # soma -> n2 -> n3 (= a)
    n3 = a
    sim.add_neurites(soma, (0, 0, 1), diameter=4.0, swc_type=4)
    n6 = int(sim.agents.uid[N.rows()].max())
    (n4,), (n5,) = N.bifurcate(n3, directions=((1, 1, 0), (1, -1, 0)))
    (n7,), (n8,) = N.bifurcate(n6, directions=((1, 0, 1), (-1, 0, 1)))
    (n9,), (n10,) = N.bifurcate(n8, directions=((-1, 0, 1), (1, 0, 1)))
    points = {n2: (1, 0, 0), n3: (2, 0, 0), n4: (3, 1, 0), n5: (3, -1, 0), n6: (0, 0, 1), n7: (0.5, 0, 2),
              n8: (-0.5, 0, 2), n9: (-1, 0, 3), n10: (0, 0, 3)}
    for u, p in points.items():
        sim.agents["distal"][N.row_of()[u]] = p
    assert bs.io.write_swc(sim, tmp_path / "neuron.swc") == 10
    text = (tmp_path / "neuron.swc").read_text()
    assert SWC_EXPORT in text and text.endswith(SWC_EXPORT)


# -- mechanics: mechanical_interaction_test.cc ----------------------------------------
def step_growth(sim, tips, directions, steps, speed, check=None):
    N = sim.neurites
    for i in range(steps):
        for u, d in zip(tips, directions):
            N.elongate(u, speed * 0.01, d)
        N.discretize()
        sim.run(1)
        if check is not None:
            check(i)


@pytest.mark.parametrize("direction, diameter, steps", [((1, 0, 0), 2.0, 100), ((1, 1, 0), 2.0, 100),
                                                        ((1, 1, 1), 1.0, 37)])
def test_straight_and_diagonal_growth_keeps_its_direction(direction, diameter, steps):
    sim = neuron(soma_diameter=10.0, directions=(direction,), neurite_diameter=diameter,
                 mechanics=bs.BioDynaMoForce())
    e = tip(sim)
    u = np.array(direction, float) / np.linalg.norm(direction)

    def check(i):
        a = col(sim, "axis", e)
        np.testing.assert_allclose(a - a @ u * u, 0, atol=TOL)  # no component off the direction

    step_growth(sim, [e], [direction], steps, 300, check)
    assert col(sim, "distal", e) @ u == pytest.approx(0.5 * 10 + 1 + 3 * steps)  # soma radius, first element


def test_growth_into_a_soma_is_deflected_around_it():
    sim = neuron(soma_diameter=10.0, somata=((0, 0, 0), (0, 0, 30)), neurite_diameter=1.0,
                 mechanics=bs.BioDynaMoForce())
    e = tip(sim)
    step_growth(sim, [e], [(0.01, 0, 1)], 100, 100,
                lambda i: np.testing.assert_allclose(col(sim, "axis", e)[1], 0, atol=TOL))
    assert col(sim, "distal", e)[0] > 5 and col(sim, "axis", e)[0] > 0


def test_growth_straight_into_a_soma_stays_on_its_axis():
    sim = neuron(soma_diameter=10.0, somata=((0, 0, 0), (0, 0, 30)), mechanics=bs.BioDynaMoForce())
    e = tip(sim)
    step_growth(sim, [e], [(0, 0, 1)], 100, 100,
                lambda i: np.testing.assert_allclose(col(sim, "axis", e)[:2], 0, atol=TOL))


def test_bifurcated_branches_grow_mirror_symmetric():
    sim = neuron(soma_diameter=10.0, mechanics=bs.BioDynaMoForce())
    e = tip(sim)
    step_growth(sim, [e], [(0, 0, 1)], 10, 100)
    (l,), (r,) = sim.neurites.bifurcate(e, directions=((1, 0, 1), (0, 1, 1)))
    step_growth(sim, [r, l], [(0, 0.5, 1), (0.5, 0, 1)], 200, 100)
    a, b = col(sim, "axis", l), col(sim, "axis", r)
    np.testing.assert_allclose([a[0], a[1], a[2]], [b[1], b[0], b[2]], atol=TOL)


def test_random_growth_then_bifurcation_keeps_growing_upwards():
    sim = neuron(soma_diameter=10.0, mechanics=bs.BioDynaMoForce(), max_length=2.0)
    e = tip(sim)
    rng = np.random.default_rng(1)
    for _ in range(100):
        sim.neurites.elongate(e, 0.1, (rng.uniform(-1, 1), rng.uniform(-1, 1), 1))
        sim.neurites.discretize()
        sim.run(1)
        assert col(sim, "axis", e)[2] > 0.1 * 0  # BioDynaMo asserts > 0.1 on an axis of length < 2
    assert col(sim, "distal", e)[2] > 10
    (l,), (r,) = sim.neurites.bifurcate(e)
    for _ in range(50):
        for u in (l, r):
            sim.neurites.elongate(u, 0.1, (rng.uniform(-1, 1), rng.uniform(-1, 1), 1))
        sim.neurites.discretize()
        sim.run(1)
    assert col(sim, "distal", l)[2] > 15 and col(sim, "distal", r)[2] > 15


def test_two_cylinders_growing_past_an_obstacle_keep_their_order():
    sim = neuron(somata=((0, 0, 0), (5.5, 0, 0), (6, 0, 16)), soma_diameters=(6, 5, 10),
                 directions=((0, 0, 1),), neurite_diameter=1.0, mechanics=bs.BioDynaMoForce())
    somata = sim.populations["soma"].uids
    sim.add_neurites(somata[1:2], (0, 0, 1), diameter=1.0)
    rows = sim.neurites.rows()
    e1, e2 = np.sort(sim.agents.uid[rows])

    def check(i):
        assert col(sim, "distal", e1)[0] < col(sim, "distal", e2)[0]

    step_growth(sim, [e1, e2], [(0.5, 0, 1), (0, 0, 1)], 200, 10, check)
    np.testing.assert_allclose([col(sim, "axis", e1)[1], col(sim, "axis", e2)[1]], 0, atol=TOL)
    assert col(sim, "distal", e1)[2] > 12 and col(sim, "distal", e2)[2] > 11


def test_two_neurites_growing_into_each_other_stay_in_their_plane():
    sim = neuron(somata=((0, 0, 0), (20, 0, 0)), soma_diameter=10.0, mechanics=bs.BioDynaMoForce(), max_length=2.0)
    somata = sim.populations["soma"].uids
    sim.add_neurites(somata[1:2], (0, 0, 1), diameter=2.0)
    e1, e2 = np.sort(sim.agents.uid[sim.neurites.rows()])
    step_growth(sim, [e1, e2], [(0.5, 0, 1), (-0.5, 0, 1)], 220, 10,
                lambda i: np.testing.assert_allclose([col(sim, "axis", e1)[1], col(sim, "axis", e2)[1]], 0,
                                                     atol=TOL))


# -- behaviours, whole runs, bad input ----------------------------------------------------
def growing(seed=3, steps=60):
    sim = bs.Simulation(bs.Box((-100, -100, -100), (100, 100, 100)), dt=0.6, seed=seed,
                        mechanics=bs.BioDynaMoForce())
    soma = sim.add_agents("soma", [[0, 0, 0], [30, 0, 0]], diameter=10.0)
    dend = sim.add_neurites(np.repeat(soma.uids, 3), np.tile([[0, 0, 1], [1, 0, -1], [-1, 1, 0]], (2, 1)),
                            diameter=1.5, mechanics=bs.NeuriteMechanics(max_length=2.0))
    dend.behaviours += [models.NeuriteElongation(speed=50 / 60, persistence=5.0, randomness=0.5,
                                                 diameter_rate=-0.001 / 0.6, min_diameter=0.75),
                        models.NeuriteBifurcation(rate=0.02 / 0.6),
                        models.NeuriteBranching(rate=0.01 / 0.6, diameter=0.9, max_branch_order=2)]
    sim.run(steps)
    return sim


def test_growing_neurons_branch_and_are_the_same_for_1_and_2_threads():
    import numba

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = growing_state()
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        b = growing_state()
    finally:
        numba.set_num_threads(before)
    assert a["n"] > 20
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def growing_state():
    sim = growing()
    t = sim.agents
    order = np.argsort(t.uid)
    return {"n": len(t), **{c: np.array(t[c])[order] for c in ("uid", "position", "distal", "mother",
                                                                 "daughter_left", "daughter_right", "diameter")}}


def test_every_uid_in_a_tree_names_a_live_agent_and_the_tree_is_consistent():
    sim = growing(steps=80)
    t = sim.agents
    rows = sim.neurites.rows()
    live = set(t.uid.tolist())
    row_of = sim.neurites.row_of()
    for c in ("mother", "daughter_left", "daughter_right"):
        v = t[c][rows]
        assert set(v[v >= 0].tolist()) <= live
    for i in rows:  # each daughter names its mother; a proximal end is the mother's distal end
        for c in ("daughter_left", "daughter_right"):
            d = t[c][i]
            if d >= 0:
                assert t["mother"][row_of[d]] == t.uid[i]
                np.testing.assert_allclose(t["distal"][row_of[d]] - t["axis"][row_of[d]], t["distal"][i], atol=1e-9)
        assert not (t["daughter_left"][i] < 0 <= t["daughter_right"][i])  # a lone daughter is the left one
    np.testing.assert_allclose(t.position[rows], t["distal"][rows] - 0.5 * t["axis"][rows], atol=1e-12)
    np.testing.assert_allclose(t["length"][rows], np.linalg.norm(t["axis"][rows], axis=1), atol=1e-12)


def test_removing_a_soma_removes_its_neurites_and_retraction_behaviour_empties_the_trees():
    sim = growing(steps=40)
    somata = sim.populations["soma"].uids
    before = sim.neurites.rows().size
    sim.agents.remove(somata[:1])
    t = sim.agents
    rows = sim.neurites.rows()
    assert 0 < rows.size < before
    assert set(t["mother"][rows].tolist()) <= set(t.uid.tolist())
    dend = sim.populations["neurites"]
    dend.behaviours.clear()
    dend.behaviours += [models.NeuriteRetraction(speed=10.0)]
    sim.run(200)
    assert sim.neurites.rows().size == 0 and len(sim.agents) == 1


def test_neurites_survive_a_checkpoint_bit_for_bit(tmp_path):
    a = growing(steps=30)
    a.save_checkpoint(tmp_path / "c.h5")
    b = bs.Simulation.load_checkpoint(tmp_path / "c.h5", allow=("biosim.models",))
    a.run(20)
    b.run(20)
    for c in a.agents.columns:
        oa, ob = np.argsort(a.agents.uid), np.argsort(b.agents.uid)
        np.testing.assert_array_equal(a.agents[c][oa], b.agents[c][ob], err_msg=c)
    import json

    import h5py

    for bad, message in (({"types": [7], "mechanics": {}}, "neurite types must be population codes"),
                         ({"types": [1], "mechanics": {"damping": -1}}, "damping must be > 0"),
                         ({"types": [1], "mechanics": {"evil": 1}}, "unexpected keyword"),
                         ("x", "state.neurites must be object or null")):
        with h5py.File(tmp_path / "c.h5", "r+") as f:
            s = json.loads(f.attrs["state"])
            s["neurites"] = bad
            f.attrs["state"] = json.dumps(s)
        with pytest.raises(bs.io.CheckpointError, match=message):
            bs.Simulation.load_checkpoint(tmp_path / "c.h5", allow=("biosim.models",))


def test_snapshots_hold_the_tree_and_write_swc(tmp_path):
    sim = growing(steps=0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "n.h5", every=10))
    sim.run(30)
    run = bs.io.open_run(tmp_path / "n.h5")
    lines = bs.io.write_swc(run, tmp_path / "n.swc")
    assert lines == len(sim.agents)
    rows = [line.split() for line in (tmp_path / "n.swc").read_text().splitlines()[1:]]
    assert [r[1] for r in rows].count("1") == 2 and all(int(r[6]) < int(r[0]) for r in rows)
    assert bs.io.write_swc(run, tmp_path / "first.swc", snapshot=0) == 8


def test_sphere_forces_are_unchanged_by_neurites_far_away():
    def spheres(with_neurite):
        sim = bs.Simulation(bs.Box((0, 0, 0), (200, 200, 200)), dt=0.1, seed=1)
        pos = bs.init.ball(n=60, radius=20.0, center=(60, 60, 60), seed=2)
        sim.add_agents("cells", pos, diameter=10.0)
        if with_neurite:
            s = sim.add_agents("soma", [[150, 150, 150]], diameter=10.0)
            sim.add_neurites(s, (1, 1, 1))
        sim.run(5)
        cells = sim.populations["cells"]
        o = np.argsort(cells.uids)
        return cells.agents["position"][o]

    np.testing.assert_array_equal(spheres(False), spheres(True))


def test_bad_input_names_the_value():
    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.6)
    soma = sim.add_agents("soma", [[50, 50, 50]], diameter=10.0)
    with pytest.raises(ValueError, match="direction row 0 .* non-zero length"):
        sim.add_neurites(soma, (0, 0, 0))
    with pytest.raises(ValueError, match="diameter must be finite and > 0"):
        sim.add_neurites(soma, (0, 0, 1), diameter=-1.0)
    with pytest.raises(ValueError, match="length must be finite and > 0"):
        sim.add_neurites(soma, (0, 0, 1), length=0.0)
    with pytest.raises(ValueError, match="soma: no agents with uid \\[99\\]"):
        sim.add_neurites([99], (0, 0, 1))
    dend = sim.add_neurites(soma, (0, 0, 1))
    with pytest.raises(ValueError, match="is a neurite element; a soma is a spherical agent"):
        sim.add_neurites(dend.uids, (0, 0, 1))
    with pytest.raises(ValueError, match="speed must be a finite number"):
        models.NeuriteElongation(speed=float("nan"))
    with pytest.raises(ValueError, match="population 'soma' is not a neurite population"):
        soma.behaviours.append(models.NeuriteRetraction(speed=1.0))
    with pytest.raises(ValueError, match="agent uid 0 is not a neurite element"):
        sim.neurites.elongate(soma.uids, 1.0, (0, 0, 1))
    with pytest.raises(ValueError, match="needs min_diameter > 0|give min_diameter > 0"):
        models.NeuriteElongation(speed=1.0, diameter_rate=-0.1)


@bs.agent_rule(reads=("length",))
def grow_up(a, ctx):
    a.elongate(0.1, 0.0, 0.0, 1.0)  # BioDynaMo's ElongateTerminalEnd(10, {0, 0, 1}) per step


@bs.agent_rule(reads=("length",))
def shrink(a, ctx):
    a.retract(0.1)


@bs.agent_rule(reads=("length", "branch_order"))
def fork_once(a, ctx):
    if a.length > 3.0 and a.branch_order == 0:
        a.bifurcate()


def test_agent_rules_call_neurite_methods():
    sim = neuron(mechanics=None)
    dend = sim.populations["neurites"]
    e = tip(sim)
    dend.behaviours += [grow_up]
    sim.run(200)  # the engine splits elements longer than 15 µm after the behaviours of each step
    np.testing.assert_allclose(col(sim, "distal", e), [0, 0, 31], atol=TOL)
    assert col(sim, "length", col(sim, "mother", e)) == pytest.approx(13.5) and len(sim.agents) == 3
    dend.behaviours.clear()
    dend.behaviours += [shrink]
    sim.run(140)
    np.testing.assert_allclose(col(sim, "distal", e), [0, 0, 17], atol=TOL)
    assert len(sim.agents) == 2
    sim.run(70)
    assert len(sim.agents) == 1
    other = neuron(mechanics=None)
    other.populations["neurites"].behaviours += [grow_up, fork_once]
    other.run(40)
    t = other.agents
    rows = other.neurites.rows()
    assert rows.size == 3 and (t["branch_order"][rows] == 1).sum() == 2
    with pytest.raises(ValueError, match="not a neurite population"):
        other.populations["soma"].behaviours.append(grow_up)
    with pytest.raises(bs.rules.RuleError if hasattr(bs, "rules") else ValueError, match="takes 4 positional"):
        @bs.agent_rule()
        def bad(a, ctx):
            a.elongate(1.0)

    @bs.agent_rule(writes=("length",))
    def stretch(a, ctx):
        a.length = 2.0

    with pytest.raises(ValueError, match="writes column 'length', which is derived"):
        other.populations["neurites"].behaviours.append(stretch)


@pytest.mark.parametrize("springs", ["implicit", "explicit"])
def test_a_stretched_element_relaxes_without_overshoot_unless_explicit(springs):
    """k = 10, R = 2 µm, 10% stretch: BioDynaMo's explicit move (force x
    dt / damping = 1 µm) overshoots the rest length to L = 1.2 µm; the
    implicit one moves by F / (1 + k/R) and approaches R from above, like
    the exact relaxation R + 0.2 exp(-t k / (R damping))."""
    sim = neuron(mechanics=None)
    sim.neurites.mechanics = bs.NeuriteMechanics(springs=springs)
    e = tip(sim)
    sim.neurites.elongate(e, 1.0, (0, 0, 1))  # L = R = 2
    r = sim.neurites.row_of()[e]
    sim.agents["resting_length"][r] = 2.0 / 1.1  # stretched by 10%: T = 10 (2 - R) / R = 1
    R = 2.0 / 1.1
    lengths = []
    for _ in range(5):
        sim.run(1)
        lengths.append(col(sim, "length", e))
    if springs == "explicit":
        assert lengths[0] == pytest.approx(2.0 - 1.0, abs=1e-9)  # moved by T = 1 µm: past R
    else:
        s = 10 / R  # k dt / (R damping), dt = damping = 0.6 min
        assert lengths[0] == pytest.approx(2.0 - 1.0 / (1 + s), abs=1e-9)
        assert all(R < b <= a for a, b in zip([2.0] + lengths, lengths))  # until below the adherence


def test_the_paraview_sidecar_draws_neurites_as_lines_with_their_diameter(tmp_path):
    pytest.importorskip("vtkmodules.vtkIOXdmf2")
    import xdmf_reader
    from vtkmodules.util.numpy_support import vtk_to_numpy

    sim = growing(steps=0)
    sim.writers.append(bs.io.HDF5Writer(tmp_path / "n.h5", every=10))
    sim.run(20)
    run = bs.io.open_run(tmp_path / "n.h5")
    for i, out in xdmf_reader.snapshots(tmp_path / "n.xmf", run):
        agents, lines = out.GetBlock(0), out.GetBlock(1)
        np.testing.assert_array_equal(vtk_to_numpy(agents.GetPoints().GetData()), run.agents(i)["position"])
        a = run.agents(i)
        rows = np.flatnonzero(a["type"] == run.populations.index("neurites"))
        rows = rows[np.argsort(a["uid"][rows])]  # the sidecar lists elements in uid order
        assert lines.GetNumberOfCells() == rows.size
        pts = vtk_to_numpy(lines.GetPoints().GetData())
        np.testing.assert_array_equal(pts[1::2], a["distal"][rows])
        np.testing.assert_allclose(pts[0::2], a["distal"][rows] - a["axis"][rows], atol=1e-12)
        np.testing.assert_array_equal(vtk_to_numpy(lines.GetPointData().GetArray("diameter"))[1::2],
                                      a["diameter"][rows])
        np.testing.assert_array_equal(vtk_to_numpy(lines.GetCellData().GetArray("uid")), a["uid"][rows])
        assert lines.GetCell(0).GetNumberOfPoints() == 2


@pytest.mark.parametrize("feels", [False, True])
def test_a_soma_feels_its_first_elements_tension_only_when_asked(feels):
    """A first element stretched to T = 1 (k = 10, L = 2 µm, R = 2/1.1 µm)
    pulls its soma by T / L x axis = (0, 0, 1) with ``soma_feels_tension``:
    the soma (diameter 20 µm, BioDynaMo's law, density 1) moves by
    F dt / (density x volume) along z in one step; without it, not at all."""
    sim = neuron(mechanics=bs.BioDynaMoForce())
    sim.neurites.mechanics = bs.NeuriteMechanics(soma_feels_tension=feels)
    e = tip(sim)
    sim.neurites.elongate(e, 1.0, (0, 0, 1))  # L = R = 2
    r = sim.neurites.row_of()[e]
    R = 2.0 / 1.1
    sim.agents["resting_length"][r] = R  # the tension follows: 10 (2 - R) / R
    assert sim.agents["tension"][r] == pytest.approx(1.0)
    sim.run(1)
    soma = sim.agents.position[sim.populations["soma"].rows][0]
    expected = 1.0 * 0.6 / (np.pi / 6 * 20.0**3) if feels else 0.0
    assert soma == pytest.approx([0.0, 0.0, expected], abs=1e-15)


def _facing_neurons(periodic, steps=45):
    """Two neurons whose neurites grow towards each other along x and pass
    0.6 µm apart (diameter 1 µm: they touch): somata at x = 20 and x = 80
    in a periodic cube of 100 µm, where they meet across the face x = 0;
    or the same neurons unwrapped, somata at 20 and -20 in a closed box
    that holds them whole, where they meet at x = 0."""
    if periodic:
        sim = bs.Simulation(bs.Box.cube(100.0), boundary="periodic", dt=0.6, seed=3, mechanics=bs.BioDynaMoForce())
        xb = 80.0
    else:
        sim = bs.Simulation(bs.Box((-60, 0, 0), (60, 100, 100)), dt=0.6, seed=3, mechanics=bs.BioDynaMoForce())
        xb = -20.0
    soma = sim.add_agents("soma", np.array([[20.0, 50.0, 50.0], [xb, 50.6, 50.0]]), diameter=10.0)
    sim.add_neurites(soma, np.array([[-1.0, 0, 0], [1.0, 0, 0]]), diameter=1.0,
                     mechanics=bs.NeuriteMechanics(max_length=4.0))
    N = sim.neurites
    tips = N.rows()[:2]
    tips = sim.agents.uid[tips].copy()
    for _ in range(steps):
        N.elongate(tips, 0.5, np.array([[-1.0, 0, 0], [1.0, 0, 0]]))
        sim.run(1)
    return sim


def test_neurites_grow_and_touch_across_a_periodic_face_as_in_a_box_that_holds_them_whole(tmp_path):
    """Across the periodic face the elements keep their geometry (axis from
    the proximal end the short way round, midpoints and distal points
    wrapped into the box), find each other in the contact search and push
    each other as the same neurons do unwrapped in a closed box; the SWC
    file draws each tree whole, as in the closed box, one neuron shifted
    by the box length."""
    wrapped, whole = _facing_neurons(True), _facing_neurons(False)
    a, b = wrapped.agents, whole.agents
    assert list(a.uid) == list(b.uid) or sorted(a.uid) == sorted(b.uid)
    ra, rb = np.argsort(a.uid), np.argsort(b.uid)
    cyl = wrapped.neurites.is_cyl()[a.type[ra]].astype(bool)
    assert cyl.sum() >= 12  # two neurites of about 27 µm in elements of at most 4 µm
    for name in ("distal", "position"):
        d = a[name][ra] - b[name][rb]
        d -= 100.0 * np.rint(d / 100.0)
        np.testing.assert_allclose(d, 0.0, atol=1e-9, err_msg=name)
        assert ((a[name][ra] >= 0.0) & (a[name][ra] < 100.0)).all()  # wrapped into the box
    for name in ("axis", "length", "tension"):
        np.testing.assert_allclose(a[name][ra], b[name][rb], atol=1e-9, err_msg=name)
    crossed = a["distal"][ra][cyl, 0] > 90.0  # the first neuron's tips across the face x = 0
    assert crossed.sum() >= 2
    # they touched: the first neuron's elements were pushed off y = 50 (alone, it grows straight)
    assert np.abs(a["distal"][ra][cyl, 1] - 50.0).max() > 1e-3
    for sim, name in ((wrapped, "wrapped.swc"), (whole, "whole.swc")):
        bs.io.write_swc(sim, tmp_path / name)
    pw = np.loadtxt(tmp_path / "wrapped.swc", comments="#")
    ph = np.loadtxt(tmp_path / "whole.swc", comments="#")
    assert pw.shape == ph.shape and np.array_equal(pw[:, [0, 1, 5, 6]], ph[:, [0, 1, 5, 6]])
    shift = pw[:, 2] - ph[:, 2]
    assert set(np.round(shift, 6)) == {0.0, 100.0}  # the second neuron, 100 µm over, whole
    np.testing.assert_allclose(shift - np.round(shift), 0.0, atol=1e-9)
    np.testing.assert_allclose(pw[:, 3:5], ph[:, 3:5], atol=1e-9)
    # a run file knows its box is periodic: its SWC is the simulation's
    wrapped.writers.append(bs.io.HDF5Writer(str(tmp_path / "wrapped.h5"), every=1))
    wrapped.run(1)
    bs.io.write_swc(wrapped, tmp_path / "live.swc")
    bs.io.write_swc(bs.io.open_run(str(tmp_path / "wrapped.h5")), tmp_path / "file.swc")
    assert (tmp_path / "file.swc").read_text() == (tmp_path / "live.swc").read_text()


def test_the_parallel_row_scans_find_the_rows_numpy_finds():
    """terminal_rows and long_tips scan chunks of rows in parallel and pack
    their matches: the rows flatnonzero finds, increasing, for a table
    spanning several chunks (the last one partial) and for one row."""
    from biosim.kernels.cpu import neurites as NK

    rng = np.random.default_rng(5)
    for n in (1, 3 * NK.SCAN_CHUNK + 17):
        types = rng.integers(0, 3, n).astype(np.int32)
        left = np.where(rng.random(n) < 0.3, -1, 7).astype(np.int64)
        # lengths 0-4 µm as derived: twice the way from the midpoint to the distal point
        distal = rng.normal(size=(n, 3))
        distal *= rng.uniform(0.0, 2.0, n)[:, None] / np.linalg.norm(distal, axis=1)[:, None]
        pos = np.zeros((n, 3))
        a = 2.0 * distal
        length = np.sqrt(a[:, 0] * a[:, 0] + a[:, 1] * a[:, 1] + a[:, 2] * a[:, 2])
        is_cyl = np.array([0, 1, 1], np.uint8)
        out = np.full(n, -5, np.int64)
        m = NK.terminal_rows(types, 2, left, n, out)
        np.testing.assert_array_equal(out[:m], np.flatnonzero((types == 2) & (left < 0)))
        m = NK.long_tips(types, is_cyl, left, distal, pos, np.full(3, 1e3), np.zeros(3, bool), n, 2.0, out)
        np.testing.assert_array_equal(out[:m], np.flatnonzero((left < 0) & (length > 2.0) & (is_cyl[types] == 1)))


def test_a_first_element_past_a_closed_face_keeps_its_place_on_the_soma():
    """A soma pushed against the face x = 0 by another: its first element
    leaves from a point past the face (radius 5 µm, attachment 0.6 µm
    outward per µm), so with its distal point clamped into the box its
    midpoint is outside.  The closed box clamps the distal point, never the
    midpoint (that would bend the derived axis), so the proximal end stays
    on the soma's surface along the attachment it was given, and the
    midpoint halfway between the ends."""
    sim = bs.Simulation(bs.Box((0, 0, 0), (100, 100, 100)), dt=0.6, mechanics=bs.BioDynaMoForce(), seed=3)
    soma = sim.add_agents("soma", [[4.0, 50.0, 50.0], [5.0, 50.0, 50.0]], diameter=10.0)
    sim.add_neurites(soma.uids[:1], [(-0.6, 0.8, 0.0)], diameter=1.0, length=1.0)
    e = tip(sim)
    sim.run(300)
    t = sim.agents
    r = sim.neurites.row_of()[e]
    centre = t.position[t.rows_of(soma.uids[:1])][0]
    assert centre[0] < 1.0  # pushed to the face
    assert t.position[r][0] < 0 and t["distal"][r][0] >= 0.0  # the midpoint outside, the distal point inside
    np.testing.assert_allclose(t["attachment"][r], [-0.6, 0.8, 0.0], atol=1e-9)
    proximal = t["distal"][r] - t["axis"][r]
    np.testing.assert_allclose(proximal, centre + 5.0 * np.array([-0.6, 0.8, 0.0]), atol=1e-9)
    np.testing.assert_allclose(t.position[r], 0.5 * (proximal + t["distal"][r]), atol=1e-9)


def test_a_soma_moved_by_a_behaviour_carries_its_neurites_whole():
    """A soma that a random walk moves (a behaviour, before the mechanics)
    keeps its first elements where they sit on it: their attachments stay
    the directions they were given, their proximal ends on its surface."""
    sim = neuron(mechanics=None, directions=((0, 0, 1), (0.6, 0.8, 0.0)))
    sim.populations["soma"].behaviours += [models.RandomWalk(diffusion=2.0)]
    start = sim.agents.position[sim.populations["soma"].rows][0].copy()
    sim.run(5)
    t = sim.agents
    soma = t.position[sim.populations["soma"].rows][0]
    assert np.linalg.norm(soma - start) > 1.0  # it walked
    rows = sim.neurites.first_rows(sim.neurites.rows())
    order = np.argsort(t.uid[rows])
    np.testing.assert_allclose(t["attachment"][rows[order]], [[0, 0, 1], [0.6, 0.8, 0.0]], atol=1e-9)
    proximal = t["distal"][rows[order]] - t["axis"][rows[order]]
    np.testing.assert_allclose(proximal, soma + 10.0 * np.array([[0, 0, 1], [0.6, 0.8, 0.0]]), atol=1e-9)
