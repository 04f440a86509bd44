"""Benchmarks: mechanics (neighbour search plus soft-sphere forces),
diffusion (both solvers) and epidemiology (SIR by proximity).

Mechanics benchmark: neighbour search plus soft-sphere mechanics.

Scenario (fixed, so numbers compare across machines and versions): N agents
uniform at random in a closed cube of edge N^(1/3) (density 1 per unit
volume), diameter 1, ``SoftSphere(adhesion_range=1.5)`` so the interaction
range is 1.5, dt = 0.1.  One step = bin + sort + forces + capped update +
boundary.  Throughput is agent-updates per second (N x steps / wall time),
compilation excluded (one warm-up step first).  Each thread count runs in a
subprocess of its own with ``NUMBA_NUM_THREADS`` set.  Memory per agent is
(resident memory after the run - resident memory before the positions were
made) / N, in a process of its own.  The baseline is the same step written
with numpy and scipy's cKDTree, timed in the same run.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

RANGE = 1.5


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _make(n, seed=1):
    import biosim as bs

    edge = n ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary="closed", dt=0.1, seed=seed,
                        mechanics=bs.SoftSphere(repulsion=2.0, adhesion=0.4, adhesion_range=RANGE))
    return sim


def _measure(make, n, steps, warm=2000):
    """Time steps 1..``steps`` of ``make(n)`` in this process: ``make(warm)``
    runs a step first so compilation (or loading the cache) is not timed,
    and step 0 of the measured simulation is not timed either.  Returns the
    simulation and a dict of throughput, per-phase and per-behaviour ms/step
    and memory held per agent (resident memory after the run minus before
    the simulation was made)."""
    import numba

    first = make(warm)
    first.run(1)
    del first
    rss0 = _rss_bytes()
    sim = make(n)
    sim.run(1)
    sim.timings.update(dict.fromkeys(sim.timings, 0.0))
    sim.behaviour_timings.clear()
    t0 = time.perf_counter()
    sim.run(steps)
    wall = time.perf_counter() - t0
    return sim, {
        "agents": n, "steps": steps, "threads": numba.get_num_threads(), "seconds": wall,
        "updates_per_s": n * steps / wall, "bytes_per_agent": (_rss_bytes() - rss0) / n,
        "ms_per_step": {k: 1e3 * v / steps for k, v in sim.timings.items() if v > 0},
        "behaviour_ms_per_step": {k: 1e3 * v / steps for k, v in sim.behaviour_timings.items()},
    }


def _make_engine(n):
    import biosim as bs

    sim = _make(n)
    sim.add_agents("cells", bs.init.uniform(n, sim.box, seed=3), diameter=1.0)
    return sim


def measure_engine(n, steps):
    """Run in the current process: dict with updates/s and per-phase ms/step."""
    return _measure(_make_engine, n, steps, warm=1000)[1]


def measure_ckdtree(n, steps):
    """The same step in numpy + scipy cKDTree (query_pairs, bincount sums)."""
    from scipy.spatial import cKDTree

    import biosim as bs

    sim = _make(n)
    pos = bs.init.uniform(n, sim.box, seed=3)
    m = sim.mechanics
    lower, upper = sim.box.lower, sim.box.upper
    t0 = time.perf_counter()
    for _ in range(steps):
        pairs = cKDTree(pos).query_pairs(RANGE, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = pos[i] - pos[j]
        r = np.sqrt((d * d).sum(axis=1))
        s = 1.0  # (d_i + d_j) / 2 for unit diameters
        f = m.repulsion * np.maximum(0, 1 - r / s) - m.adhesion * np.maximum(0, 1 - r / (m.adhesion_range * s))
        fv = d * (f / r)[:, None]
        force = np.stack([np.bincount(i, fv[:, k], n) - np.bincount(j, fv[:, k], n) for k in range(3)], axis=1)
        disp = force * (sim.dt / m.damping)
        norm = np.linalg.norm(disp, axis=1)
        big = norm > m.max_displacement
        disp[big] *= (m.max_displacement / norm[big])[:, None]
        pos = np.clip(pos + disp, lower, upper)
    wall = time.perf_counter() - t0
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall}


def _subprocess(kind, n, steps, threads=None):
    return _run_code(f"measure_{kind}({n}, {steps})", threads)


def main(agents=1_000_000, threads=None, steps=10, baseline=True, memory_agents=None, out=None):
    """Print the benchmark table; returns the results as a dict."""
    cores = os.cpu_count() or 1
    if threads is None:
        counts = sorted({1, cores})
    elif isinstance(threads, str):
        counts = [int(t) for t in threads.split(",") if t.strip()]
    else:
        counts = list(threads)
    print(f"biosim mechanics benchmark: N={agents:,} agents, density 1, range {RANGE}, {steps} steps, "
          f"closed box; {cores} cores")
    results = {"agents": agents, "steps": steps, "runs": []}
    for t in counts:
        r = _subprocess("engine", agents, steps, t)
        results["runs"].append(r)
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["ms_per_step"].items())
        print(f"  {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s   "
              f"({phases} ms/step)")
    base = results["runs"][0]["updates_per_s"]
    for r in results["runs"][1:]:
        print(f"  speed-up {r['threads']} vs {results['runs'][0]['threads']} thread(s): "
              f"{r['updates_per_s'] / base:.2f}x (efficiency {r['updates_per_s'] / base / r['threads'] * results['runs'][0]['threads']:.0%})")
    best = max(results["runs"], key=lambda r: r["updates_per_s"])
    if baseline:
        ref_steps = max(1, min(steps, 3))
        b = _subprocess("ckdtree", agents, ref_steps)
        results["ckdtree"] = b
        print(f"  numpy + cKDTree baseline: {b['updates_per_s'] / 1e6:7.2f} M agent-updates/s; biosim with "
              f"{best['threads']} thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
    print(f"  memory held per agent at N={agents:,}: {best['bytes_per_agent']:.0f} bytes")
    if memory_agents:
        r = _subprocess("engine", memory_agents, 2, cores)
        results["memory_run"] = r
        print(f"  N={memory_agents:,}: runs, {r['bytes_per_agent']:.0f} bytes per agent, "
              f"{r['updates_per_s'] / 1e6:.2f} M agent-updates/s with {r['threads']} thread(s)")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"  results: {out}")
    return results


# -- diffusion ---------------------------------------------------------------
def measure_diffusion(solver, n, steps):
    """Voxel-updates per second of one solver on an n^3 grid (D = 100 µm²/min,
    spacing 10 µm, dt = 0.01 min: one diffusion step per base step, within
    the explicit limit), no-flux faces, compilation excluded."""
    import numba

    import biosim as bs

    sim = bs.Simulation(bs.Box.cube(10.0 * n), dt=0.01, mechanics=None)
    rng = np.random.default_rng(1)
    s = sim.add_substance("s", diffusion=100.0, decay=0.0, spacing=10.0, initial=rng.random((n, n, n)),
                          solver=solver)
    sim.run(1)
    t0 = time.perf_counter()
    sim.run(steps)
    wall = time.perf_counter() - t0
    return {"solver": solver, "n": n, "steps": steps, "threads": numba.get_num_threads(),
            "voxel_updates_per_s": n ** 3 * steps / wall, "checksum": float(s.concentration.sum())}


def measure_numpy_diffusion(n, steps):
    """The same explicit step in numpy (edge padding for no-flux faces)."""
    rng = np.random.default_rng(1)
    c = rng.random((n, n, n))
    a = 100.0 * 0.01 / 10.0 ** 2
    t0 = time.perf_counter()
    for _ in range(steps):
        p = np.pad(c, 1, mode="edge")
        lap = (p[:-2, 1:-1, 1:-1] + p[2:, 1:-1, 1:-1] + p[1:-1, :-2, 1:-1] + p[1:-1, 2:, 1:-1]
               + p[1:-1, 1:-1, :-2] + p[1:-1, 1:-1, 2:] - 6.0 * c)
        c = c + a * lap
    wall = time.perf_counter() - t0
    return {"solver": "numpy", "n": n, "steps": steps, "voxel_updates_per_s": n ** 3 * steps / wall}


def diffusion_main(sizes=(100, 50), threads=None, steps=20):
    """Print voxel-updates per second for both solvers, each thread count in its
    own process, against numpy's explicit step measured in the same run."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores}) if threads is None else list(threads)
    results = []
    for n in sizes:
        print(f"diffusion benchmark: {n}^3 grid, {steps} steps, no-flux faces")
        base = _run_code(f"measure_numpy_diffusion({n}, {max(2, steps // 4)})", None)
        print(f"  numpy explicit step      : {base['voxel_updates_per_s'] / 1e6:8.1f} M voxel-updates/s")
        for solver in ("explicit", "implicit"):
            first = None
            for t in counts:
                r = _run_code(f"measure_diffusion({solver!r}, {n}, {steps})", t)
                first = first or r
                results.append(r)
                extra = f", {r['voxel_updates_per_s'] / first['voxel_updates_per_s']:.2f}x of 1 thread" if t != first["threads"] else ""
                print(f"  {solver:<9} {t:>2} thread(s): {r['voxel_updates_per_s'] / 1e6:8.1f} M voxel-updates/s "
                      f"({r['voxel_updates_per_s'] / base['voxel_updates_per_s']:.1f}x numpy{extra})")
        results.append(base)
    return results


# -- epidemiology (SIR) --------------------------------------------------------
# BioDynaMo's measles demo (demo/epidemiology): 2000 susceptible + 10 infected
# agents in a periodic 100^3 box, dt = 1 h, speed 5.786 per hour, infection
# probability 0.2851 per step near an infected agent, recovery 0.00521 per
# step.  Its infection radius 10.5092 is passed to a search that takes a
# squared radius, so the contact distance is sqrt(10.5092).
SIR_DT = 60.0                                         # min
SIR_SPEED = 5.78594372145249 / 60.0                   # µm/min
SIR_RADIUS = 10.5092197414493 ** 0.5                  # µm
SIR_P_INFECT = 0.285097276954021                      # per step, per infected contact
SIR_P_RECOVER = 0.00521                               # per step
SIR_DENSITY = 2010 / 100.0 ** 3                       # agents / µm³
SIR_Q = 1.0 - SIR_P_INFECT


def _sir_rule():
    from .rules import agent_rule

    @agent_rule(writes=("state",))
    def sir(a, ctx):
        """The work of models.Infection (SIR at dt = SIR_DT) written as a user rule."""
        if a.state == 0:
            k = 0
            for n in ctx.neighbours(SIR_RADIUS):
                if n.state == 1:
                    k += 1
            if k > 0 and ctx.uniform(0) < 1.0 - SIR_Q ** k:
                a.state = 1
        elif a.state == 1:
            if ctx.uniform(0) < SIR_P_RECOVER:
                a.state = 2
    return sir


def make_sir(n, seed=1, rule=False, search="auto"):
    """The epidemiology benchmark scenario at ``n`` agents: BioDynaMo's measles
    demo scaled at constant density (box edge 100 (n / 2010)^(1/3) µm,
    periodic) and infected fraction (10 in 2010); random walk at fixed speed
    plus SIR infection by proximity, no mechanics.  ``rule=True`` replaces
    models.Infection by the same work written as an agent rule; ``search``
    is models.Infection's contact search ("pull" is the rule's algorithm)."""
    import biosim as bs
    from biosim import models

    edge = 100.0 * (n / 2010.0) ** (1.0 / 3.0)
    sim = bs.Simulation(bs.Box.cube(edge), boundary="periodic", dt=SIR_DT, seed=seed, mechanics=None)
    n_inf = max(1, round(n * 10 / 2010))
    pos = bs.init.uniform(n, sim.box, seed=seed + 1)
    pop = sim.add_agents("people", pos[n_inf:], diameter=2.0, state=np.int8(models.SUSCEPTIBLE))
    infection = _sir_rule() if rule else models.Infection(
        rate=models.rate_from_probability(SIR_P_INFECT, SIR_DT), radius=SIR_RADIUS,
        recovery=models.rate_from_probability(SIR_P_RECOVER, SIR_DT), search=search)
    pop.behaviours += [models.RandomWalk(speed=SIR_SPEED), infection]
    sim.add_agents("people", pos[:n_inf], diameter=2.0, state=np.int8(models.INFECTED))
    return sim


def measure_sir(n, steps, rule=False, search="auto"):
    """Agent-updates per second of steps 1..steps of the SIR scenario (step 0
    compiles or loads the cache and is not timed)."""
    sim, result = _measure(lambda m: make_sir(m, rule=rule, search=search), n, steps, warm=3000)
    result.update(rule=rule, sir=np.bincount(sim.agents["state"], minlength=3)[:3].tolist())
    return result


BIODYNAMO_SIR_RATE = 10.05e6 * 1000 / (19 * 60 + 18)  # agent-updates/s, 2-core system (published)


def sir_main(sizes=(1_000_000, 10_000_000), threads=None, steps=50, rule=True):
    """Print the SIR benchmark table: per size and thread count, agent-updates
    per second of models.Infection + RandomWalk and, with ``rule``, of the
    same infection written as an agent rule; against BioDynaMo's published
    2-core figure."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores}) if threads is None else list(threads)
    print(f"biosim SIR benchmark (BioDynaMo measles scaled): density {SIR_DENSITY * 1e6:.0f} per 100^3 µm³, "
          f"10 infected in 2010, radius {SIR_RADIUS:.3f} µm, steps 1..{steps}; {cores} cores")
    print(f"  BioDynaMo published, 10.05 M agents on 2 cores: {BIODYNAMO_SIR_RATE / 1e6:.2f} M agent-updates/s")
    results = []
    for n in sizes:
        first = None
        for t in counts:
            r = _run_code(f"measure_sir({n}, {steps})", t)
            results.append(r)
            first = first or r
            phases = ", ".join(f"{k} {v:.1f}" for k, v in r["behaviour_ms_per_step"].items())
            extra = (f", {r['updates_per_s'] / first['updates_per_s']:.2f}x of 1 thread"
                     if r is not first else "")
            print(f"  N={n:>11,} {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s "
                  f"({r['updates_per_s'] / BIODYNAMO_SIR_RATE:.2f}x BioDynaMo{extra}); "
                  f"{1e3 * r['seconds'] / steps:.1f} ms/step ({phases}; neighbours "
                  f"{r['ms_per_step'].get('neighbours', 0):.1f}); {r['bytes_per_agent']:.0f} B/agent")
        if rule:
            t = counts[-1]
            u = _run_code(f"measure_sir({n}, {steps}, rule=True)", t)
            pull = _run_code(f"measure_sir({n}, {steps}, search='pull')", t)
            results += [u, pull]
            auto = next(r for r in results if r["agents"] == n and r["threads"] == t and not r["rule"])
            ui = u["behaviour_ms_per_step"]["people.sir"]
            pi = pull["behaviour_ms_per_step"]["people.Infection"]
            ai = auto["behaviour_ms_per_step"]["people.Infection"]
            print(f"  N={n:>11,} {t:>2} thread(s), infection as a user rule: {u['updates_per_s'] / 1e6:7.2f} M "
                  f"agent-updates/s; rule {ui:.1f} ms/step, models.Infection {pi:.1f} ms/step with the same "
                  f"search (pull: rule/built-in {ui / pi:.2f}x), {ai:.1f} ms/step with search='auto'")
    return results


# -- circles (FLAME GPU 2) --------------------------------------------------------
CIRCLES_RADIUS = 2.0
CIRCLES_STRENGTH = 0.05


def _circles_behaviour():
    from .behaviour import Behaviour
    from .kernels.cpu.circles import circles_step

    class Circles(Behaviour):
        """FLAME GPU 2's circles model as a behaviour (closed box): every agent
        moves by the mean of sin(-2 pi d / r) x strength along the unit
        vectors to its neighbours closer than r (µm)."""

        writes = ("position",)

        def __init__(self, radius=CIRCLES_RADIUS, strength=CIRCLES_STRENGTH, every=1):
            super().__init__(every)
            self.radius = radius
            self.strength = strength

        def run(self, sim, population, dt):
            from numba import get_num_threads

            from .kernels.cpu.forces import gather_capacity

            t = sim.agents
            n = len(t)
            if n == 0:
                return
            grid = sim._neighbour_grid(self.radius)
            args = grid.kernel_args()
            room = gather_capacity(grid.cell_start, grid.dims, grid.inv_h, grid.cutoff, n)
            buf = np.empty((get_num_threads(), 3, room))
            out = t.scratch((n, 3), np.float64)
            circles_step(t.position, n, *args, self.radius, self.strength, buf, out)
            t.position[:] = out
            sim.confine(t.position)

    return Circles


def make_circles(n, seed=1):
    """FLAME GPU 2's circles benchmark in 3D: N agents uniform in a closed cube
    of side N^(1/3) (density 1), interaction radius 2, strength 0.05; each
    step every agent moves by the mean of sin(-2 pi d / r) x 0.05 along the
    unit vectors to its neighbours closer than r.  Pure neighbour search and
    interaction: no mechanics, no other behaviour."""
    import biosim as bs

    sim = bs.Simulation(bs.Box.cube(n ** (1.0 / 3.0)), boundary="closed", dt=1.0, seed=seed, mechanics=None)
    pop = sim.add_agents("circles", bs.init.uniform(n, sim.box, seed=seed + 1), diameter=1.0)
    pop.behaviours += [_circles_behaviour()()]
    return sim


def measure_circles(n, steps):
    sim, result = _measure(make_circles, n, steps)
    result["checksum"] = float(sim.agents.position.sum())
    return result


def circles_reference(pos, radius=CIRCLES_RADIUS, strength=CIRCLES_STRENGTH, lower=None, upper=None):
    """One circles step in numpy + scipy cKDTree (the baseline, and the test
    reference): new positions, clamped to [lower, upper] when given."""
    from scipy.spatial import cKDTree

    n = len(pos)
    pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = pos[j] - pos[i]
    r = np.sqrt((d * d).sum(axis=1))
    ok = r > 0
    i, j, d, r = i[ok], j[ok], d[ok], r[ok]
    f = (strength * np.sin(-2 * np.pi * r / radius) / r)[:, None] * d
    total = np.zeros((n, 3))
    np.add.at(total, i, f)
    np.add.at(total, j, -f)
    count = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    new = pos + total / np.maximum(count, 1)[:, None]
    if lower is not None:
        new = np.clip(new, lower, upper)
    return new


def measure_circles_ckdtree(n, steps):
    import biosim as bs

    sim = make_circles(n)
    pos = sim.agents.position.copy()
    lower, upper = sim.box.lower, sim.box.upper
    t0 = time.perf_counter()
    for _ in range(steps):
        pos = circles_reference(pos, lower=lower, upper=upper)
    wall = time.perf_counter() - t0
    del bs
    return {"agents": n, "steps": steps, "seconds": wall, "updates_per_s": n * steps / wall}


def circles_main(agents=1_000_000, threads=None, steps=10, baseline=True):
    """Print the circles table: agent-updates per second per thread count, the
    speed-up and the ratio to numpy + cKDTree measured in the same run."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores}) if threads is None else list(threads)
    print(f"biosim circles benchmark (FLAME GPU 2): N={agents:,}, density 1, radius {CIRCLES_RADIUS}, "
          f"{steps} steps, closed box; {cores} cores")
    runs = []
    for t in counts:
        r = _run_code(f"measure_circles({agents}, {steps})", t)
        runs.append(r)
        print(f"  {t:>2} thread(s): {r['updates_per_s'] / 1e6:7.2f} M agent-updates/s   "
              f"({r['ms_per_step'].get('neighbours', 0):.1f} ms/step neighbours, "
              f"{r['ms_per_step'].get('behaviours', 0):.1f} ms/step interaction); "
              f"{r['bytes_per_agent']:.0f} bytes/agent")
    for r in runs[1:]:
        sp = r["updates_per_s"] / runs[0]["updates_per_s"]
        print(f"  speed-up {r['threads']} vs {runs[0]['threads']} thread(s): {sp:.2f}x "
              f"(efficiency {sp / r['threads'] * runs[0]['threads']:.0%})")
    if baseline:
        b = _run_code(f"measure_circles_ckdtree({agents}, {max(1, min(steps, 3))})", None)
        best = max(runs, key=lambda r: r["updates_per_s"])
        print(f"  numpy + cKDTree baseline: {b['updates_per_s'] / 1e6:7.2f} M agent-updates/s; biosim with "
              f"{best['threads']} thread(s) is {best['updates_per_s'] / b['updates_per_s']:.1f}x faster")
    return runs


def _run_code(call, threads):
    env = dict(os.environ)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    code = f"import json, biosim.bench as b; print('RESULT', json.dumps(b.{call}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({call}, threads={threads}):\n{out.stderr[-3000:]}")
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
