"""First-step time of an agent rule in a first and a second process.

An agent rule with a neighbour loop (2,000 agents) is run for one step in
two fresh processes that share an empty rule cache (a temporary
``BIOSIM_CACHE_DIR``; the engine's own kernels come from numba's usual
cache, so only the rule compiles): the first process compiles the rule and
caches it, the second loads it.  Prints both times and their ratio.

    python benchmarks/rule_startup.py
"""
import os
import subprocess
import sys
import tempfile
import textwrap

SCRIPT = textwrap.dedent("""
    import time
    import biosim as bs
    RADIUS = 12.0

    @bs.agent_rule(reads=("diameter",), writes=("crowd",), columns={"crowd": ("float64", 0.0)})
    def crowding(a, ctx):
        s = 0.0
        for n in ctx.neighbours(RADIUS):
            s += n.diameter / (1.0 + n.distance)
        a.crowd = s
        if s > 6.0 and ctx.uniform(0) < 0.02:
            a.die()

    sim = bs.Simulation(bs.Box.cube(200.0), seed=1, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(2000, sim.box, seed=2), diameter=8.0)
    pop.behaviours += [crowding]
    t0 = time.perf_counter()
    sim.run(1)
    print(time.perf_counter() - t0)
""")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "rule.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        env = dict(os.environ, BIOSIM_CACHE_DIR=os.path.join(tmp, "cache"))
        if "NUMBA_CACHE_DIR" not in env:  # the engine's kernels from the user's cache, warmed here
            from biosim._cache import configure_numba

            configure_numba()
            env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
            subprocess.run([sys.executable, script], env=dict(env, BIOSIM_CACHE_DIR=os.path.join(tmp, "warm")),
                           check=True, capture_output=True)
        times = [float(subprocess.run([sys.executable, script], env=env, check=True, capture_output=True,
                                      text=True).stdout.split()[-1]) for _ in range(2)]
    print(f"agent rule, first step: first process {times[0]:.2f} s (compiles and caches), "
          f"second process {times[1]:.2f} s (loads): {times[0] / times[1]:.1f}x")


if __name__ == "__main__":
    main()
