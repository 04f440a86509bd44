"""Hostile input over the public API (hypothesis): every call either works or
raises ValueError / TypeError (KeyError for unknown names) whose message names
the parameter; never a crash, a numba error, a hang or a silently wrong
result."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import biosim as bs
from biosim import models

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, -1e300, 2.0 ** 63, np.nan, np.inf, -np.inf]),
)
weird_scalars = st.one_of(weird_floats, st.integers(-2**70, 2**70), st.booleans(), st.none(),
                          st.text(max_size=5), st.just([1.0, 2.0]), st.just({"a": 1}))
dtypes = st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.uint8, np.bool_, np.complex128,
                          np.dtype("U3"), np.dtype("O")])


def arrays(max_dims=3):
    def build(dtype):
        if dtype == np.dtype("O"):
            return st.just(np.array([None, 1.0], dtype=object))
        elements = None
        if np.dtype(dtype).kind == "f":
            elements = st.floats(allow_nan=True, allow_infinity=True, width=np.dtype(dtype).itemsize * 8)
        return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5),
                          elements=elements)
    return dtypes.flatmap(build)


def _named(exc, *names):
    msg = str(exc)
    assert any(n in msg for n in names), f"message does not name {names}: {msg!r}"


def _sim(**kw):
    return bs.Simulation(bs.Box.cube(100.0), mechanics=kw.pop("mechanics", None), **kw)


@SETTINGS
@given(lower=st.one_of(weird_scalars, arrays(2)), upper=st.one_of(weird_scalars, arrays(2)))
def test_box(lower, upper):
    try:
        box = bs.Box(lower, upper)
    except (ValueError, TypeError) as e:
        _named(e, "lower", "upper")
        return
    assert np.all(np.isfinite(box.length)) and np.all(box.length > 0)


@SETTINGS
@given(edge=weird_scalars, dt=weird_scalars, seed=weird_scalars, boundary=st.one_of(
    st.sampled_from(["closed", "periodic", "open", "Closed", "", "torus"]), weird_scalars),
    reorder=st.one_of(st.integers(-3, 20), weird_scalars))
def test_simulation_parameters(edge, dt, seed, boundary, reorder):
    try:
        box = bs.Box.cube(edge)
    except (ValueError, TypeError) as e:
        _named(e, "edge", "upper", "lower")
        return
    assert np.all(box.lower == 0) and np.all(box.length == float(edge)) and float(edge) > 0
    try:
        sim = bs.Simulation(box, boundary=boundary, dt=dt, seed=seed, mechanics=None, reorder_every=reorder)
    except (ValueError, TypeError) as e:
        _named(e, "dt", "seed", "boundary", "reorder_every")
        return
    # what construction produced is what was asked for
    assert sim.box == box and sim.boundary == boundary and boundary in ("closed", "periodic", "open")
    assert sim.dt == float(dt) and np.isfinite(sim.dt) and sim.dt > 0
    assert sim.seed == int(seed) and not isinstance(seed, bool)
    assert sim.reorder_every == reorder and sim._grid.reorder_every == reorder and reorder >= 1
    assert sim.step == 0 and sim.time == 0.0 and sim.mechanics is None and len(sim.agents) == 0


@SETTINGS
@given(position=arrays(3), diameter=st.one_of(weird_scalars, arrays(1)), extra=st.one_of(weird_scalars, arrays(1)))
def test_add_agents(position, diameter, extra):
    sim = _sim()
    try:
        pop = sim.add_agents("c", position, diameter=diameter, energy=extra)
    except (ValueError, TypeError) as e:
        _named(e, "position", "diameter", "energy")
        assert len(sim.agents) == 0  # nothing half-added
        return
    t = sim.agents
    assert len(t) == len(pop) and np.all(np.isfinite(t.position)) and np.all(t.diameter > 0)
    assert np.all(np.isfinite(t.diameter))
    sim.run(1)  # what was accepted runs


@SETTINGS
@given(diffusion=weird_scalars, decay=weird_scalars, spacing=weird_scalars,
       initial=st.one_of(weird_scalars, arrays(3)), solver=st.sampled_from(["implicit", "explicit", "magic", 3]),
       dt=st.one_of(st.none(), weird_scalars))
def test_add_substance(diffusion, decay, spacing, initial, solver, dt):
    sim = _sim()
    try:
        sub = sim.add_substance("s", diffusion, decay=decay, spacing=spacing, initial=initial, solver=solver, dt=dt)
    except (ValueError, TypeError) as e:
        _named(e, "diffusion", "decay", "spacing", "initial", "solver", "dt")
        assert "s" not in sim.substances
        return
    assert np.all(np.isfinite(sub.concentration))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if np.prod(sub.shape) * sub.substeps(sim.dt)[0] <= 2e6:
            sim.run(1)
            assert np.all(np.isfinite(sub.concentration))


MODEL_CASES = [
    (models.GrowthDivision, ("growth_rate", "division_diameter")),
    (models.Apoptosis, ("rate",)),
    (models.RandomWalk, ("diffusion",)),
    (models.RandomWalk, ("speed",)),
    (models.Infection, ("rate", "radius", "recovery", "immunity_loss")),
    (models.StateSwitch, ("rate",)),
]


@SETTINGS
@pytest.mark.parametrize("cls,names", MODEL_CASES, ids=lambda x: getattr(x, "__name__", str(x)))
@given(values=st.lists(weird_scalars, min_size=4, max_size=4), every=weird_scalars)
def test_model_parameters(cls, names, values, every):
    kw = dict(zip(names, values))
    if cls is models.StateSwitch:
        kw["to"] = "c"
    try:
        b = cls(**kw, every=every)
    except (ValueError, TypeError) as e:
        _named(e, *names, "every")
        return
    sim = _sim()
    pop = sim.add_agents("c", bs.init.uniform(30, sim.box, seed=1), diameter=5.0)
    try:
        pop.behaviours += [b]
    except (ValueError, TypeError) as e:
        _named(e, "radius", "diameter")
        return
    sim.run(2)
    t = sim.agents
    assert np.all(np.isfinite(t.position)) and np.all(np.isfinite(t.diameter))


@SETTINGS
@given(phases=st.one_of(st.lists(st.text(max_size=3), max_size=4), weird_scalars),
       durations=st.one_of(st.lists(weird_floats, max_size=4), weird_scalars),
       fixed=st.one_of(st.booleans(), st.lists(st.booleans(), max_size=4), weird_scalars))
def test_cell_cycle_parameters(phases, durations, fixed):
    try:
        b = models.CellCycle(phases, durations, fixed=fixed)
    except (ValueError, TypeError) as e:
        _named(e, "phases", "durations", "fixed", "phase")
        return
    sim = _sim()
    pop = sim.add_agents("c", bs.init.uniform(20, sim.box, seed=1), diameter=5.0)
    pop.behaviours += [b]
    sim.run(3)
    assert np.all(sim.agents["phase"] < len(b.phases))


@SETTINGS
@given(steps=weird_scalars, radius=weird_scalars)
def test_run_and_neighbours_arguments(steps, radius):
    sim = _sim(mechanics=bs.SoftSphere())
    sim.add_agents("c", bs.init.uniform(50, sim.box, seed=2), diameter=5.0)
    try:
        offsets, rows = sim.neighbours(radius)
    except (ValueError, TypeError) as e:
        _named(e, "radius")
    else:  # exactly the pairs closer than the radius
        pos = sim.agents.position
        d = np.linalg.norm(pos[:, None] - pos[None], axis=2)
        np.fill_diagonal(d, np.inf)
        for i in range(len(pos)):
            np.testing.assert_array_equal(np.sort(rows[offsets[i]:offsets[i + 1]]), np.flatnonzero(d[i] < radius))
    try:
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool) and steps > 50:
            steps = 50  # big counts are valid; keep the test short
        sim.run(steps)
    except (ValueError, TypeError) as e:
        _named(e, "steps")
        assert sim.step == 0
    else:
        assert sim.step == int(steps) and len(sim.agents) == 50


@SETTINGS
@given(name=st.one_of(st.text(max_size=6), weird_scalars), dtype=st.one_of(dtypes, weird_scalars),
       default=weird_scalars, shape=st.one_of(st.just(()), st.lists(st.integers(-2, 4), max_size=3), weird_scalars),
       inherit=st.one_of(st.none(), st.sampled_from(["copy", "default", "split", "clone"])))
def test_add_column(name, dtype, default, shape, inherit):
    sim = _sim()
    sim.add_agents("c", [[1.0, 1.0, 1.0]])
    try:
        sim.agents.add_column(name, dtype, default, shape, inherit=inherit)
    except (ValueError, TypeError) as e:
        _named(e, "column", "dtype", "default", "shape", "inherit")
        return
    assert name in sim.agents.columns
    sim.run(1)


@SETTINGS
@given(names=st.lists(st.sampled_from(["a", "b", "a", "", "x y"]), min_size=1, max_size=4))
def test_duplicate_names(names):
    sim = _sim()
    for name in names:
        try:
            sim.add_substance(name, diffusion=1.0, spacing=10.0)
        except (ValueError, TypeError) as e:
            _named(e, "name", "substance")
        try:
            sim.record(name, lambda s: 1.0)
        except (ValueError, TypeError) as e:
            _named(e, "record")
    assert len(set(sim.substances)) == len(sim.substances)


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_files_are_refused_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("junk") / "junk.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + data if data[:1] == b"\x00" else data)
    with pytest.raises((ValueError, FileNotFoundError)):
        bs.io.open_run(path)
    with pytest.raises((ValueError, FileNotFoundError)):
        bs.Simulation.load_checkpoint(path)
