"""Run a script (an example) as ``__main__`` and save, from rank 0, the whole
final state of every Simulation it ran: every agent column in uid order,
every substance grid, every record.  Used by tests/test_mpi.py to compare
``mpiexec -n R`` runs with one process bit for bit.

    python tests/mpi_driver.py OUT.npz SCRIPT.py [ARGS...]
"""
import os
import runpy
import sys

import numpy as np

import biosim as bs


def main():
    out, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    sims = []
    run = bs.Simulation.run

    def recording_run(self, *a, **k):
        if not any(s is self for s in sims):
            sims.append(self)
        return run(self, *a, **k)

    bs.Simulation.run = recording_run
    sys.argv = [script] + args
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code not in (0, 1, None):
            raise
    state = {}
    for i, sim in enumerate(sims):
        dd = sim._dd
        if dd is None:
            _save(state, i, sim)
        else:
            with dd.gathered():
                _save(state, i, sim)
    if not sims or sims[0].rank == 0:
        np.savez(out, **state)


def _save(state, i, sim):
    t = sim.agents
    order = np.argsort(t.uid, kind="stable")
    for name in t.columns:
        state[f"{i}/agents/{name}"] = t[name][order]
    for name, sub in sim.substances.items():
        state[f"{i}/substances/{name}"] = np.array(sub.concentration)
    for name, rec in sim.records.items():
        state[f"{i}/records/{name}"] = np.asarray(rec.values)
    state[f"{i}/step"] = np.int64(sim.step)
    state[f"{i}/next_uid"] = np.int64(t.next_uid)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[2])) if len(sys.argv) > 2 else ".")
    main()
