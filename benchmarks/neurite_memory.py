"""Where a neurite element's bytes go: builds the neurite benchmark's
neurons (biosim.bench.neurites.make_neurons), runs some steps, then walks
the numpy arrays the simulation holds and prints each one's bytes per agent
(every array counted once, views by their base), largest first.

    python benchmarks/neurite_memory.py                   # 3x10^5 elements, 20 steps
    python benchmarks/neurite_memory.py --agents 1000000
"""
import argparse

import numpy as np


def walk(obj, path, seen, depth=0):
    """{id(base array): (bytes, path)} of the arrays reachable from ``obj``
    through biosim and model objects, dicts, lists and tuples."""
    if depth > 6:
        return
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        seen.setdefault(id(base), (base.nbytes, path))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            walk(v, f"{path}[{k!r}]", seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            walk(v, f"{path}[{k}]", seen, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) \
            and type(obj).__module__.startswith(("biosim", "models")):
        for k, v in vars(obj).items():
            walk(v, f"{path}.{k}", seen, depth + 1)


def main():
    from biosim.bench.neurites import make_neurons

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=float, default=3e5, help="neurite elements at the start")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    sim = make_neurons(int(a.agents))
    sim.run(a.steps)
    n = len(sim.agents)
    seen = {}
    walk(sim, "sim", seen)
    print(f"{n:,} agents, table capacity {sim.agents.capacity:,}")
    total = 0
    for nbytes, path in sorted(seen.values(), reverse=True):
        total += nbytes
        if nbytes / n >= 0.5:
            print(f"  {nbytes / n:7.1f} B/agent  {path}")
    print(f"  {total / n:7.1f} B/agent in all")


if __name__ == "__main__":
    main()
