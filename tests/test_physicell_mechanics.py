"""PhysiCell's potentials with each cell's own values (issue 17): repulsion
sqrt(c_i c_j), adhesion sqrt(a_i a_j) f_ij, reach lam_i r_i + lam_j r_j,
per population, per pair of populations and set per cell by rules."""
import math
import textwrap

import numpy as np
import pytest

import biosim as bs
from biosim import models

from test_physicell_project import SETTINGS, _project
from threads import assert_bit_identical, runs_with_1_and_2_threads

REP = {"a": 10.0, "b": 4.0}
ADH = {"a": 0.4, "b": 1.0}
LAM = {"a": 1.25, "b": 1.6}
AFF = [[1.0, 0.3], [0.3, 2.0]]


def _sim(n=300, side=100.0, boundary="closed", seed=3, **kw):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.0, side, (n, 3))
    d = rng.uniform(12.0, 18.0, n)
    sim = bs.Simulation(bs.Box.cube(side), boundary=boundary, dt=0.1, seed=1,
                        mechanics=bs.PhysiCellForce(max_displacement=math.inf, **kw))
    sim.add_agents("a", pos[: n // 2], diameter=d[: n // 2])
    sim.add_agents("b", pos[n // 2:], diameter=d[n // 2:])
    return sim


def naive_cell_forces(sim, rep, adh, lam, aff):
    """O(N^2) PhysiCell potentials with per-cell values (arrays by row) and
    the affinity table: the reference."""
    t = sim.agents
    n = len(t)
    P, D, T = t.position[:n], t.diameter[:n], t.type[:n]
    L = sim.box.length
    periodic = sim.boundary == "periodic"
    out = np.zeros((n, 3))
    for i in range(n):
        dv = P[i] - P
        if periodic:
            dv -= L * np.rint(dv / L)
        r = np.sqrt((dv ** 2).sum(1))
        r[i] = np.inf
        s = 0.5 * (D[i] + D)
        S = 0.5 * (lam[i] * D[i] + lam * D)
        f = (np.sqrt(rep[i] * rep) * np.maximum(0, 1 - r / s) ** 2
             - np.sqrt(adh[i] * adh) * np.asarray(aff)[T[i], T] * np.maximum(0, 1 - r / S) ** 2)
        out[i] = (f[:, None] * dv / r[:, None]).sum(0)
    return out


def _by_type(values, sim):
    return np.array([values["a"], values["b"]])[sim.agents.type[: len(sim.agents)]]


@pytest.mark.parametrize("boundary", ["closed", "periodic"])
def test_per_population_values_are_physicell_s_pair_formulas(boundary):
    sim = _sim(boundary=boundary, repulsion=REP, adhesion=ADH, adhesion_range=LAM, affinity=AFF)
    f = sim.mechanics.forces(sim)[: len(sim.agents)].copy()
    ref = naive_cell_forces(sim, _by_type(REP, sim), _by_type(ADH, sim), _by_type(LAM, sim), AFF)
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(f, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_the_same_values_for_all_give_the_one_value_kernel_s_forces():
    a = _sim()
    b = _sim(repulsion={"a": 10.0, "b": 10.0}, affinity=1.0)
    fa = a.mechanics.forces(a)[: len(a.agents)][np.argsort(a.agents.uid)]
    fb = b.mechanics.forces(b)[: len(b.agents)][np.argsort(b.agents.uid)]
    assert b.mechanics._cellwise() and not a.mechanics._cellwise()
    np.testing.assert_allclose(fb, fa, rtol=0, atol=1e-13 * np.abs(fa).max())


def test_an_affinity_matrix_equals_the_pair_table_of_physicell_s_adhesion():
    """sqrt(a_i aff_ij a_j aff_ji) as a pair table (one repulsion and reach)
    and as per-population adhesion with affinities: the same forces."""
    a = np.array([0.4, 1.0])
    table = np.sqrt(np.outer(a, a)) * np.array(AFF)
    x = _sim(adhesion=table)
    y = _sim(adhesion={"a": 0.4, "b": 1.0}, affinity=AFF)
    fx = x.mechanics.forces(x)[: len(x.agents)][np.argsort(x.agents.uid)]
    fy = y.mechanics.forces(y)[: len(y.agents)][np.argsort(y.agents.uid)]
    np.testing.assert_allclose(fy, fx, rtol=0, atol=1e-13 * np.abs(fx).max())


def test_coincident_centres_with_per_cell_values_are_pushed_apart_equally():
    sim = _sim(n=2, repulsion=REP, adhesion=ADH, adhesion_range=LAM)
    t = sim.agents
    t.position[1] = t.position[0]  # an a and a b cell at one point
    f = sim.mechanics.forces(sim)[:2].copy()
    np.testing.assert_array_equal(f[0], -f[1])
    # PhysiCell's law at r = 0: sqrt(c_a c_b) - sqrt(a_a a_b) (affinity 1)
    assert np.linalg.norm(f[0]) == pytest.approx(math.sqrt(10.0 * 4.0) - math.sqrt(0.4 * 1.0), rel=1e-12)


THREADS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import biosim as bs
    from biosim import models

    rng = np.random.default_rng(3)
    sim = bs.Simulation(bs.Box.cube(120.0), dt=0.1, seed=1, mechanics=bs.PhysiCellForce(
        repulsion={"a": 10.0, "b": 4.0}, adhesion={"a": 0.4, "b": 1.0}, adhesion_range={"a": 1.25, "b": 1.6},
        affinity=[[1.0, 0.3], [0.3, 2.0]], max_displacement=float("inf")))
    for name in ("a", "b"):
        sim.add_agents(name, rng.uniform(0, 120, (600, 3)), diameter=rng.uniform(12, 18, 600))
    rules = [["a", "contact with b", "increases", "cell-cell repulsion", "30", "0.5", "1", "0"],
             ["b", "pressure", "decreases", "cell-cell adhesion", "0", "0.5", "2", "0"]]
    for p in sim.populations.values():
        p.behaviours += [models.Rules(rules)]
    sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=5))
    sim.run(10)
""")


def test_the_per_cell_kernel_is_bit_identical_for_1_and_2_threads(tmp_path):
    one, two = runs_with_1_and_2_threads(tmp_path, THREADS_SCRIPT)
    assert_bit_identical(one, two)


RULE = "a,contact with b,increases,cell-cell repulsion,30,0.5,1,0\n" \
       "a,pressure,decreases,cell-cell adhesion,0,0.5,2,0\n" \
       "b,volume,increases,relative maximum adhesion distance,2,1000,1,0\n"


def test_rules_set_repulsion_adhesion_and_reach_per_cell(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text(RULE)
    sim = _sim(repulsion=REP, adhesion=ADH, adhesion_range=LAM)
    b = sim.populations["b"]
    b.behaviours += [models.Volume()]
    sim.agents["volume"][:] = 2494.0
    for p in sim.populations.values():
        p.behaviours += [models.Rules(str(path))]
    assert sim.mechanics._cellwise()
    sim.run(1)
    t = sim.agents
    n = len(t)
    a = t.type[:n] == 0
    rep, adh, lam = (t["rule_" + k][:n] for k in ("repulsion", "adhesion", "adhesion_range"))
    assert rep[a].max() > 10.0 and adh[a].min() < 0.4  # the rules moved them off the base values
    np.testing.assert_allclose(lam[~a], 1.6 + (2 - 1.6) * (2494 / 1000) / (1 + 2494 / 1000), rtol=1e-12)
    f = sim.mechanics.forces(sim)[:n].copy()
    ref = naive_cell_forces(sim, np.where(a, rep, 4.0), np.where(a, adh, 1.0), np.where(a, 1.25, lam),
                            np.ones((2, 2)))
    np.testing.assert_allclose(f, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_a_per_population_force_survives_a_checkpoint(tmp_path):
    sim = _sim(repulsion=REP, adhesion=ADH, adhesion_range=LAM, affinity={("a", "a"): 1.0, ("a", "b"): 0.3,
                                                                        ("b", "b"): 2.0})
    sim.run(2)
    sim.save_checkpoint(tmp_path / "c.h5")
    back = bs.Simulation.load_checkpoint(tmp_path / "c.h5")
    assert back.mechanics.parameters() == sim.mechanics.parameters()
    sim.run(2)
    back.run(2)
    assert np.array_equal(back.agents.position[np.argsort(back.agents.uid)],
                          sim.agents.position[np.argsort(sim.agents.uid)])


@pytest.mark.parametrize("kw, error, match", [
    ({"repulsion": {"a": 10.0}}, ValueError, r"repulsion has no value for population 'b'"),
    ({"repulsion": {"a": 10.0, "b": 1.0, "c": 2.0}}, ValueError, r"populations that do not exist: c"),
    ({"adhesion_range": {"a": 1.25, "b": 0.9}}, ValueError, r"adhesion_range\['b'\] must be >= 1"),
    ({"repulsion": {"a": -1.0, "b": 1.0}}, ValueError, r"repulsion\['a'\]"),
    ({"repulsion": {}}, ValueError, r"repulsion is an empty dict"),
    ({"affinity": [[1.0, 0.2], [0.3, 1.0]]}, ValueError, r"affinity matrix must be symmetric"),
    ({"affinity": [[1.0]]}, ValueError, r"affinity matrix is 1 x 1 but there are 2 populations"),
    ({"adhesion": [[0.4, 0.1], [0.1, 0.4]], "repulsion": REP}, ValueError, r"adhesion per pair of populations"),
])
def test_bad_per_cell_values_are_refused(kw, error, match):
    with pytest.raises(error, match=match):
        sim = _sim(n=10, **kw)
        sim.mechanics.forces(sim)


def test_a_rule_on_mechanics_needs_physicell_s_force(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text("a,pressure,increases,cell-cell adhesion,1,0.5,1,0\n")
    sim = bs.Simulation(bs.Box.cube(50.0))
    sim.add_agents("a", [[10.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"rules.csv, line 1: behaviour 'cell-cell adhesion' sets PhysiCellForce's value per cell"):
        sim.populations["a"].behaviours += [models.Rules(str(path))]
    path.write_text("a,pressure,increases,relative maximum adhesion distance,0.5,0.5,1,0\n")
    sim = _sim(n=10)
    with pytest.raises(ValueError, match=r"max_response 0.5 for 'relative maximum adhesion distance' must be >= 1"):
        sim.populations["a"].behaviours += [models.Rules(str(path))]


def test_a_project_with_per_type_repulsion_and_reach_loads_them(tmp_path):
    mech = ("<mechanics><cell_cell_adhesion_strength>0.2</cell_cell_adhesion_strength>"
            "<cell_cell_repulsion_strength>5</cell_cell_repulsion_strength>"
            "<relative_maximum_adhesion_distance>1.5</relative_maximum_adhesion_distance></mechanics>")
    settings = SETTINGS.replace('<cell_definition name="macrophage" ID="1" parent_type="tumor">\n      <phenotype>',
                                '<cell_definition name="macrophage" ID="1" parent_type="tumor">\n      <phenotype>'
                                + mech)
    assert settings != SETTINGS
    with pytest.warns(UserWarning):
        sim = bs.physicell.load(_project(tmp_path, settings=settings))
    m = sim.mechanics
    assert m.repulsion == {"tumor": 10.0, "macrophage": 5.0}
    assert m.adhesion == {"tumor": 0.4, "macrophage": 0.2}
    assert m.adhesion_range == {"tumor": 1.25, "macrophage": 1.5}
    # the tumour's affinity 0.5 to macrophages, the macrophage's 1 (none given): sqrt(0.5 * 1)
    np.testing.assert_allclose(m._aff_matrix, [[1.0, math.sqrt(0.5)], [math.sqrt(0.5), 1.0]], rtol=1e-15)
    assert not any("repulsion" in w for w in getattr(sim, "_physicell_unsupported", ()))
    sim.run(3)
    assert np.all(np.isfinite(sim.agents.position[: len(sim.agents)]))
