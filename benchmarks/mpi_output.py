"""Output under MPI: clustering (2x10^5 agents) with a record every 5 steps and
an HDF5 writer every 5 steps, 20 steps; each rank prints its time per step,
the exchange and output phases, its peak RSS and the bytes it sent.

    NUMBA_NUM_THREADS=1 mpiexec -n 2 python benchmarks/mpi_output.py
"""
import os
import resource
import time

import biosim as bs
from biosim.bench.scenarios import SCENARIOS
sim = SCENARIOS["clustering"].make(200000, seed=3)
sim.record("n", lambda s: float(len(s.agents)), every=5)
sim.run(2)
sim.writers.append(bs.io.HDF5Writer(f"out-{os.environ.get('TAG','x')}.h5", every=5))
t0 = time.perf_counter(); sim.run(20); wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = sim.timings.get("output", 0) ; ex = sim.timings.get("exchange", 0)
print(f"rank {sim.rank}: {1e3*wall/20:.1f} ms/step, exchange {1e3*ex/22:.1f} ms/step, output {1e3*out/22:.1f} ms/step, peak RSS {peak:.0f} MB, sent {sim._dd.bytes/1e6:.0f} MB")
