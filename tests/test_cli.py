"""The biosim command and the embedded demo, run as a user would."""
import subprocess
import sys

import numpy as np

import biosim as bs


def biosim(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "biosim", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_info():
    r = biosim("info")
    assert r.returncode == 0, r.stderr
    for word in ("biosim", "numba", "threads", "gpu"):
        assert word in r.stdout


def test_run_script_with_threads(tmp_path):
    script = tmp_path / "user.py"
    script.write_text(
        "import sys, numba, biosim as bs\n"
        "sim = bs.Simulation(bs.Box.cube(50.0), seed=1)\n"
        "sim.add_agents('a', bs.init.uniform(20, sim.box, seed=1), diameter=3.0)\n"
        "sim.writers.append(bs.io.HDF5Writer(sys.argv[1], every=5))\n"
        "sim.run(10)\n"
        "print('threads', numba.get_num_threads())\n")
    r = biosim("--threads", "1", "run", str(script), str(tmp_path / "u.h5"))
    assert r.returncode == 0, r.stderr
    assert "threads 1" in r.stdout
    assert len(bs.io.open_run(tmp_path / "u.h5")) == 3
    r = biosim("run", str(tmp_path / "missing.py"))
    assert r.returncode != 0 and "missing.py" in r.stderr


def test_demo_small(tmp_path):
    r = biosim("demo", "--out", str(tmp_path / "o"), "--steps", "200", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "cells after 200 steps" in r.stdout
    run = bs.io.open_run(tmp_path / "o" / "demo.h5")
    assert run.steps[-1] == 200 and len(run) == 11
    assert run.populations == ["live", "necrotic"] and run.substances == ("oxygen",)
    assert len(run.agents(-1)["uid"]) > len(run.agents(0)["uid"]) == 8


def test_demo_grows_to_about_ten_thousand_cells(tmp_path):
    from biosim import demo

    sim = demo.build(seed=42)
    sim.run(1240)
    assert 5000 < len(sim.agents) < 20000
    # oxygen runs out inside: a necrotic core within a live rim
    t = sim.agents
    necrotic = t.type == sim.populations["necrotic"].code
    r = np.linalg.norm(t.position - t.position.mean(axis=0), axis=1)
    assert 0.1 < necrotic.mean() < 0.6 and np.median(r[necrotic]) < 0.7 * np.median(r[~necrotic])
    o2 = sim.substances["oxygen"].concentration
    assert o2.min() < demo.HYPOXIC and demo.OXYGEN - 0.1 < o2.max() <= demo.OXYGEN  # fed from the faces
    # asynchronous division: the live cells' sizes spread over the cycle, not a few lockstep values
    assert np.unique(np.round(t.diameter[~necrotic], 1)).size > 20
    d = sim.agents.diameter
    assert d.min() > 8.0 and d.max() < 12.7
    assert sim.box.contains(sim.agents.position).all()
    # mechanics keep the spheroid from collapsing: hardly any centres within 3 µm
    pairs = bs.neighbour_pairs(sim.agents.position, 3.0, sim.box)
    assert len(pairs) < 0.005 * len(sim.agents)


def test_run_with_profile_prints_time_per_phase_and_behaviour(tmp_path):
    script = tmp_path / "prof.py"
    script.write_text(
        "import biosim as bs\n"
        "from biosim import models\n"
        "sim = bs.Simulation(bs.Box.cube(80.0), seed=1)\n"
        "pop = sim.add_agents('cells', bs.init.uniform(200, sim.box, seed=1), diameter=5.0)\n"
        "pop.behaviours += [models.RandomWalk(diffusion=1.0), models.Apoptosis(rate=0.001)]\n"
        "sim.run(25)\n")
    r = biosim("run", "--profile", str(script))
    assert r.returncode == 0, r.stderr
    out = r.stderr
    assert "biosim profile: 25 steps" in out
    for phase in ("neighbours", "behaviours", "mechanics", "substances", "commit", "output",
                  "cells.RandomWalk", "cells.Apoptosis"):
        assert phase in out
    rows = {ln.split()[0]: float(ln.split()[1]) for ln in out.splitlines()[2:] if ln.strip()}
    assert rows["mechanics"] > 0 and rows["cells.RandomWalk"] > 0
    assert abs(sum(v for k, v in rows.items() if "." not in k) - float(out.split(" agents now, ")[1].split()[0])) < 2e-3
