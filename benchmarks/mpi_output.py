"""Output under MPI: soma clustering (2x10^5 agents by default) with a record
and an HDF5 writer every 5 steps, 20 steps; rank 0 prints a line per rank:
its time per step, exchange and output phases, peak RSS and bytes sent.
Records and writers see the whole simulation, gathered on rank 0 only.

    NUMBA_NUM_THREADS=1 mpiexec -n 2 python benchmarks/mpi_output.py [--agents 2e5]
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

import biosim as bs
from biosim.bench.scenarios import SCENARIOS


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=float, default=2e5)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    sim = SCENARIOS["clustering"].make(int(a.agents), seed=3)
    sim.record("agents", lambda s: float(len(s.agents)), every=5)
    sim.run(2)  # compiled, decomposed
    with tempfile.TemporaryDirectory() as tmp:
        folder = sim._dd.comm.bcast(tmp, root=0) if sim._dd is not None else tmp
        sim.writers.append(bs.io.HDF5Writer(str(Path(folder) / "run.h5"), every=5))
        steps = sim.step + a.steps
        sim.timings.update(dict.fromkeys(sim.timings, 0.0))
        t0 = time.perf_counter()
        sim.run(a.steps)
        wall = time.perf_counter() - t0
        if sim._dd is not None:
            sim._dd.comm.Barrier()  # rank 0's folder stays until every rank is done
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per = {k: 1e3 * sim.timings.get(k, 0.0) / a.steps for k in ("exchange", "output")}
    sent = sim._dd.bytes / 1e6 if sim._dd is not None else 0.0
    line = (f"rank {sim.rank} of {sim.ranks}, to step {steps}: {1e3 * wall / a.steps:.1f} ms/step, exchange "
            f"{per['exchange']:.1f} ms/step, output {per['output']:.1f} ms/step, peak RSS {peak:.0f} MB, "
            f"sent {sent:.0f} MB over the whole run")
    lines = sim._dd.comm.gather(line, root=0) if sim._dd is not None else [line]
    if sim.rank == 0:  # one printer: lines from several ranks at once could merge
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
