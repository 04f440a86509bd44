"""What every benchmark shares: memory readings, the timed run, one
subprocess per thread count, and the machine record."""
import gc
import json
import os
import platform
import subprocess
import sys
import time


def _status_bytes(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_bytes():
    """Resident memory of this process now (bytes; 0 where /proc is missing)."""
    return _status_bytes("VmRSS:")


def _peak_rss_bytes():
    """Peak resident memory of this process (bytes) since the last
    :func:`_reset_peak` (or the start)."""
    return _status_bytes("VmHWM:")


def _reset_peak():
    """Reset the peak-resident-memory mark to the current resident memory
    (Linux: writing 5 to /proc/self/clear_refs); best effort."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def cpu_model():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    """What a benchmark result needs to be compared: CPU model, logical cores,
    cores this process may use, memory, OS and the versions of Python,
    numpy, numba, llvmlite, scipy and biosim, and numba's threading layer."""
    import llvmlite
    import numba
    import numpy as np
    import scipy

    import biosim

    try:
        mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        mem = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process yet
        layer = numba.config.THREADING_LAYER
    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
        "memory_gib": None if mem is None else round(mem / 2**30, 1),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "llvmlite": llvmlite.__version__, "scipy": scipy.__version__, "biosim": biosim.__version__,
        "threading_layer": layer,
    }


def measure_run(make, n, steps, repeat=1, warm=2000):
    """Time ``steps`` steps of ``make(n)`` in this process, ``repeat`` times.

    First ``make(min(warm, n))`` runs one step: compilation (or loading
    numba's cache) is timed there and reported apart as ``compile_s``.
    Each repetition then builds ``make(n)`` afresh (``setup_s``), runs step
    0 untimed (first touch of every buffer) and times the next ``steps``
    steps.  Agent-updates are ``steps`` x the mean of the agent counts
    before and after (the count changes when agents divide or die).

    Returns the last simulation and a dict: ``updates_per_s`` and the
    per-phase (``ms_per_step``) and per-behaviour timings of the median
    repetition, every repetition's throughput, ``bytes_per_agent`` (resident
    memory held after the first repetition minus before its simulation was
    made, per agent) and ``peak_bytes_per_agent`` (the peak over that
    repetition, same baseline).  Simulations run on the default device
    (``$BIOSIM_DEVICE``); on a GPU ``device_bytes_per_agent`` is the device
    memory held after the first repetition per agent.

    Under MPI (``mpiexec -n R``, see :mod:`biosim.parallel`) every rank
    calls it: agent counts are the whole simulation's, the wall time the
    slowest rank's, memory per agent rank 0's over its share (n / R), and
    ``exchange_bytes_per_step`` what a rank sends per step on average
    (aura, migration, gathers); ``ranks`` and ``rank`` say where it ran."""
    import numba

    from ..backends import get_backend

    backend = get_backend()  # the scenarios' default device ($BIOSIM_DEVICE)
    clock = time.perf_counter
    t0 = clock()
    first = make(min(warm, n))
    first.run(1)
    compile_s = clock() - t0
    del first
    reps = []
    sim = None
    for r in range(repeat):
        sim = None
        gc.collect()
        if r == 0:
            _reset_peak()
            rss0 = _rss_bytes()
            dev0 = backend.free_memory()[0] if backend.on_device else 0
        t0 = clock()
        sim = make(n)
        setup_s = clock() - t0
        sim.run(1)
        sim.timings.update(dict.fromkeys(sim.timings, 0.0))
        sim.behaviour_timings.clear()
        dd = sim._dd
        n0 = _count(sim)
        sent = 0 if dd is None else dd.bytes
        t0 = clock()
        sim.run(steps)
        backend.synchronize()
        wall = clock() - t0
        if dd is not None:
            wall = dd.allreduce_max(wall)
        n1 = _count(sim)
        updates = steps * (n0 + n1) / 2.0
        if r == 0:
            held, peak = _rss_bytes() - rss0, _peak_rss_bytes() - rss0
            dev_held = dev0 - backend.free_memory()[0] if backend.on_device else 0
        reps.append({
            "seconds": wall, "setup_s": setup_s, "updates_per_s": updates / wall,
            "agents_start": n0, "agents_end": n1,
            "exchange_bytes_per_step": 0.0 if dd is None else dd.comm.allreduce(dd.bytes - sent) / dd.size / steps,
            "ms_per_step": {k: 1e3 * v / steps for k, v in sim.timings.items() if v > 0},
            "behaviour_ms_per_step": {k: 1e3 * v / steps for k, v in sim.behaviour_timings.items()},
        })
    order = sorted(range(repeat), key=lambda i: reps[i]["updates_per_s"])
    med = reps[order[repeat // 2]]
    share = n / sim.ranks
    result = {"agents": n, "steps": steps, "threads": numba.get_num_threads(), "repeat": repeat,
              "ranks": sim.ranks, "rank": sim.rank,
              "rank_grid": "" if sim._dd is None else "x".join(str(int(d)) for d in sim._dd.dims),
              "device": backend.name, "device_bytes_per_agent": dev_held / n,
              "compile_s": compile_s, "bytes_per_agent": held / share, "peak_bytes_per_agent": max(peak, held) / share,
              "repeats_updates_per_s": [r["updates_per_s"] for r in reps]}
    result.update(med)
    return sim, result


def _count(sim):
    """Agents in the whole simulation (under MPI, summed over the ranks)."""
    n = len(sim.agents)
    return n if sim._dd is None else sim._dd.comm.allreduce(n)


def _measure(make, n, steps, warm=2000):
    """One repetition of :func:`measure_run`: (simulation, result)."""
    return measure_run(make, n, steps, 1, warm)


def mpiexec():
    """The ``mpiexec`` beside this Python (the mpich wheel's) or on the PATH;
    a ValueError saying how to get one if there is none."""
    import shutil

    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        raise ValueError('ranks: no mpiexec found; pip install "biosim[mpi]" (mpi4py and the mpich wheel)')
    return found


def _run_code(call, threads, extra_env=None, ranks=1):
    """Evaluate ``biosim.bench.<call>`` in a fresh Python process with
    ``NUMBA_NUM_THREADS=threads`` (with ``ranks`` > 1: under ``mpiexec -n
    ranks``, rank 0's result) and return its JSON result."""
    env = dict(os.environ)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    env.update(extra_env or {})
    code = (f"import json, biosim.bench as b; r = b.{call}\n"
            f"if r.get('rank', 0) == 0: print('RESULT', json.dumps(r))")
    cmd = [sys.executable, "-c", code]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({call}, threads={threads}):\n{out.stderr[-3000:]}")
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def thread_counts(threads):
    """1 and all cores, or the thread counts given."""
    cores = os.cpu_count() or 1
    return sorted({1, cores}) if threads is None else list(threads)


def scaling_runs(call, sizes, threads):
    """For each size n and thread count t, ``biosim.bench.<call.format(n=n)>``
    in a process of its own; yields (n, t, result, the size's first result)."""
    for n in sizes:
        first = None
        for t in thread_counts(threads):
            r = _run_code(call.format(n=n), t)
            first = first or r
            yield n, t, r, first
