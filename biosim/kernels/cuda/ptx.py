"""Compile every CUDA kernel of biosim to PTX without a GPU (the CI gate).

The simulator (``NUMBA_ENABLE_CUDASIM=1``) runs kernels as Python and
accepts code that real compilation rejects (``np.sqrt``, ``np.empty``,
...).  This module compiles each kernel for a real architecture with
``numba.cuda.compile_ptx`` (needs ``numba-cuda[cu13]``, no GPU) with the
argument types the backend launches it with, and checks that no kernel
adds floats with atomics (``atom.*.add.f64`` / ``.f32``): every float sum
of the backend runs in a fixed order.

    python -m biosim.kernels.cuda.ptx [--cc 9.0]

prints one line per kernel and exits 1 if any fails.  Run it without
``NUMBA_ENABLE_CUDASIM``.
"""
import re
import sys
import time
import types

F1 = "float64[::1]"
F2 = "float64[:, ::1]"
I1 = "int64[::1]"
I32 = "int32[::1]"
U1 = "uint8[::1]"
B1 = "boolean[::1]"
I8 = "int8[::1]"
T3F = "UniTuple(float64, 3)"
T3I = "UniTuple(int64, 3)"
T3B = "UniTuple(boolean, 3)"


def _signatures():
    """(name, kernel, signature) for every kernel, with the types the backend
    passes (row gathers: every column dtype agents use)."""
    from . import _launch as L
    from . import behaviours as K
    from . import circles as C
    from . import diffusion as D
    from . import forces as F
    from . import grid as G
    from . import rng as R

    out = [
        ("_launch._fill_i64", L._fill_i64, f"void({I1}, int64, int64)"),
        ("_launch._chunk_sums", L._chunk_sums, f"void({I1}, int64, {I1})"),
        ("_launch._chunk_prefix", L._chunk_prefix, f"void({I1}, int64, {I1}, {I1})"),
        ("_launch._max_f64", L._max_f64, f"void({F1}, int64, {F1})"),
        ("_launch._min_f64", L._min_f64, f"void({F1}, int64, {F1})"),
        ("grid._assign_cells", G._assign_cells, f"void({F2}, int64, {T3F}, {T3F}, {T3I}, {T3B}, {I1})"),
        ("grid._count_invalid", G._count_invalid, f"void({F2}, {F1}, {I32}, int64, int64, {I1})"),
        ("grid._histogram", G._histogram, f"void({I1}, int64, {I1})"),
        ("grid._scatter", G._scatter, f"void({I1}, {I1}, int64, {I1}, {I1}, {I1})"),
        ("grid._uid_order_within_cells", G._uid_order_within_cells, f"void({I1}, int64, {I1}, {I1})"),
        ("grid._count_moved", G._count_moved, f"void({I1}, int64, {I1})"),
        ("grid._copy_i64", G._copy_i64, f"void({I1}, int64, {I1})"),
        ("grid._sorted_columns", G._sorted_columns, f"void({F2}, {F1}, {I32}, {I1}, int64, {F2})"),
        ("grid._arange", G._arange, f"void({I1}, int64)"),
        ("rng._uniform", R._uniform, f"void(int64, {I1}, int64, int64, int64, {F1})"),
        ("rng._normal", R._normal, f"void(int64, {I1}, int64, int64, int64, {F1})"),
        ("rng._unit_vector", R._unit_vector, f"void(int64, {I1}, int64, int64, int64, {F2})"),
        ("forces._overdamped", F._overdamped, f"void({F2}, {F2}, int64, float64, float64, {I1})"),
        ("forces._adams_bashforth", F._adams_bashforth, f"void({F2}, {F2}, {F2}, int64, float64, float64, {I1})"),
        ("forces._wall", F._wall, f"void({F2}, {F1}, {F2}, int64, {T3F}, {T3F}, boolean, float64)"),
        ("forces._mass", F._mass, f"void({F2}, {F2}, {F1}, int64, float64, float64, float64, float64, {I1})"),
        ("forces._clamp", F._clamp, f"void({F2}, int64, {T3F}, {T3F})"),
        ("forces._wrap_into", F._wrap_into, f"void({F2}, int64, {T3F}, {T3F})"),
        ("forces._outside", F._outside, f"void({F2}, int64, {T3F}, {T3F}, {B1}, {I1})"),
        ("_launch._flags_to_counts", L._flags_to_counts, f"void({B1}, int64, {I1})"),
        ("_launch._scatter_nonzero", L._scatter_nonzero, f"void({B1}, int64, {I1}, {I1})"),
        ("_launch._fill_f64", L._fill_f64, f"void({F1}, float64, int64)"),
        ("_launch._zero_u8", L._zero_u8, f"void({U1}, int64)"),
        ("grid._mark_survivors", G._mark_survivors, f"void({I1}, int64, {I1}, int64, {I1})"),
        ("behaviours._grow", K._grow, f"void({I32}, int64, {F1}, int64, float64, {F1}, float64, {B1}, {I1})"),
        ("behaviours._divide", K._divide,
         f"void({I1}, int64, {F2}, {F1}, {I1}, int64, int64, int64, float64, float64, boolean, {F2}, {F1})"),
        ("behaviours._volume_update", K._volume_update,
         f"void({I32}, int64, int64, float64, float64[:, ::1], float64, {I8}, boolean, {F1}, {F1}, {F1}, {F1}, "
         f"{F1}, {F1}, {F1})"),
        ("behaviours._death_phases", K._death_phases,
         f"void({I1}, int64, {I1}, boolean, {F1}, float64, {F1}, int64, int64, int64, int64, float64, float64, "
         f"float64, {I8}, {F1}, {F1}, boolean, {F1}, {F1}, {B1}, {I1})"),
        ("behaviours._live_types", K._live_types, f"void({I32}, {I8}, int64, {I32})"),
        ("behaviours._mark_random", K._mark_random,
         f"void({I32}, int64, {I1}, int64, int64, int64, int64, float64, {B1}, {I1})"),
        ("behaviours._brownian", K._brownian, f"void({I32}, int64, {I1}, {F2}, int64, int64, int64, int64, float64)"),
        ("behaviours._directed", K._directed, f"void({I32}, int64, {I1}, {F2}, int64, int64, int64, int64, float64)"),
        ("behaviours._infection_pull", K._infection_pull,
         f"void({I32}, int64, {I1}, int8[::1], int8[::1], {F2}, int64, {I1}, {I1}, {T3F}, {T3F}, {T3I}, {T3F}, "
         f"{T3B}, float64, float64, int64, int64, int64)"),
        ("behaviours._recovery", K._recovery,
         f"void({I32}, int64, {I1}, int8[::1], int8[::1], int64, float64, float64, int64, int64, int64)"),
        ("behaviours._copy_1d[int8]", K._copy_1d, "void(int8[::1], int64, int8[::1])"),
        ("behaviours._cell_cycle", K._cell_cycle,
         f"void({I32}, int64, {I1}, int8[::1], {F1}, int64, float64, float64[:, ::1], {B1}, float64[:, ::1], "
         f"int8[::1], {B1}, int64, "
         f"int64, int64, {F1}, float64, {B1}, {I1})"),
        ("diffusion._ftcs", D._ftcs, f"void(float64[:, :, ::1], float64[:, :, ::1], float64, float64, float64, "
                                     f"float64, {I1}, {F1}, float64[:, :, ::1], float64[:, :, ::1], float64[:, :, ::1])"),
        ("diffusion._lod_lines", D._lod_lines, f"void(float64[:, :, ::1], float64, {F1}, {F1}, {F1}, float64, float64, "
                                               f"boolean, {F2}, {F2})"),
        ("diffusion._apply_sources", D._apply_sources,
         f"void({F1}, {I1}, int64, {F1}, {F1}, {F1}, {F1}, boolean, boolean, boolean, boolean, float64)"),
        ("diffusion._scale", D._scale, f"void({F1}, int64, float64)"),
        ("circles._circles", C._circles,
         f"void({F2}, int64, {I1}, {I1}, {I1}, {T3F}, {T3I}, {T3B}, float64, float64, float64, {F2})"),
    ]
    out += [
        ("diffusion._sample", D._sample, f"void({F1}, int64, int64, int64, {T3F}, float64, boolean, {F2}, {I1}, int64, "
                                         f"{F1}, {F2}, boolean)"),
        ("diffusion._voxel_of", D._voxel_of, f"void({F2}, {I1}, int64, {T3F}, float64, int64, int64, int64, {I1})"),
        ("diffusion._source_keys", D._source_keys, f"void({I1}, int64, {I1}, int64, {I1})"),
        ("diffusion._scaled_copy", D._scaled_copy, f"void({F1}, int64, float64, {F1})"),
        ("diffusion._touched", D._touched, f"void({I1}, int64, {B1})"),
        ("diffusion._sum_runs", D._sum_runs,
         f"void({I1}, int64, {I1}, {I1}, {F2}, boolean, boolean, boolean, boolean, {F2})"),
        ("diffusion._set_term", D._set_term, f"void({F2}, int64, int64, {F1}, float64, boolean, float64)"),
        ("diffusion._nonzero_flags", D._nonzero_flags, f"void({F1}, int64, {B1})"),
        ("diffusion._take_divided", D._take_divided, f"void({F1}, {I1}, int64, float64, {F1})"),
        ("diffusion._set_layer", D._set_layer, "void(float64[:, :, ::1], int64, int64, float64[:, ::1])"),
        ("behaviours._move_along", K._move_along, f"void({F2}, {I1}, int64, {F2}, float64)"),
        ("behaviours._mark_below", K._mark_below,
         f"void({I1}, int64, {I1}, {F1}, float64, {F1}, int64, int64, int64, {B1}, {I1})"),
        ("behaviours._volume_fraction", K._volume_fraction, f"void({I1}, int64, {F1}, float64, float64, {F1})"),
        ("behaviours._scale_dead", K._scale_dead, f"void({I1}, int64, {I8}, float64, {F1})"),
        ("behaviours._damage_step", K._damage_step, f"void({I32}, int64, int64, float64, float64, {F1})"),
        ("behaviours._motility", K._motility,
         f"void({I1}, int64, {I1}, int64, int64, int64, {F1}, {F1}, {F1}, boolean, {F2}, {F2}, {F2}, float64)"),
        ("behaviours._contacts", K._contacts,
         f"void({I32}, int64, int64, {I8}, boolean, {F2}, {F1}, {I1}, {I1}, {T3F}, {T3F}, {T3I}, {T3F}, {T3B}, "
         f"float64, float64, {F1}, float64[:, ::1], boolean)"),
        ("behaviours._limit_factor", K._limit_factor, f"void({I1}, int64, {F1}, float64, {F1})"),
        ("behaviours._substance_gate", K._substance_gate, f"void({F1}, int64, float64, float64, {F1})"),
        ("behaviours._where_equal[int32]", K._where_equal, f"void({I32}, int64, int32, {B1})"),
    ]
    for dt in ("float64", "int64", "int32", "int8", "boolean"):
        out.append((f"behaviours._assign[{dt}]", K._assign, f"void({dt}[::1], {I1}, int64, {dt})"))
    for dt in ("float64", "int64", "int32", "uint8", "boolean", "float32"):
        a2 = f"{dt}[:, ::1]"
        out.append((f"grid._gather_rows[{dt}]", G._gather_rows, f"void({a2}, {I1}, int64, {a2})"))
        out.append((f"grid._copy_rows[{dt}]", G._copy_rows, f"void({a2}, int64, {a2})"))
        out.append((f"grid._compact_rows[{dt}]", G._compact_rows, f"void({a2}, {I1}, int64, {a2})"))
    for law, kernel in F.FORCE_KERNELS.items():
        out.append((f"forces.FORCE_KERNELS[{law!r}]", kernel,
                    f"void({T3F}, {I32}, {F2}, boolean, int64, {I1}, {I1}, {I1}, {T3F}, {T3F}, {T3I}, {T3F}, "
                    f"{T3B}, float64, {F2}, {I1}, int64, int64, {F2}, {F2})"))
    out.append(("forces._cell_mechanics", F._cell_mechanics,
                f"void({I32}, {F1}, int64, {F2}, uint8[:, ::1], {F1}, {F1}, {F1}, {F2}, {I1})"))
    return out


FLOAT_ATOMIC_ADD = re.compile(r"\b(?:atom|red)\.[a-z.]*add\.f(?:32|64)\b")


def compile_kernel(kernel, sig, cc=(9, 0)):
    """PTX of one CUDA kernel (a ``cuda.jit`` dispatcher) for argument types
    ``sig`` (a signature string or a tuple of numba types) and compute
    capability ``cc``, without a GPU.  Raises RuntimeError for floats added
    with atomics, numba's error if it does not compile."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        raise RuntimeError("PTX compilation needs real compilation: unset NUMBA_ENABLE_CUDASIM")
    import numba.cuda.dispatcher as dispatcher

    # kernels that call device functions ask for the current device; there is none here
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    hit = FLOAT_ATOMIC_ADD.search(ptx)
    if hit:
        raise RuntimeError(f"adds floats with atomics ({hit.group(0)}): the sum's order would change from run to run")
    return ptx


def compile_all(cc=(9, 0), verbose=False):
    """Compile every kernel to PTX for compute capability ``cc``; returns
    {name: ptx}.  Raises RuntimeError naming the kernels that fail to
    compile or add floats with atomics."""
    result, failures = {}, []
    for name, kernel, sig in _signatures():
        t0 = time.perf_counter()
        try:
            ptx = compile_kernel(kernel, sig, cc)
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            if verbose:
                print(f"  FAIL {name}: {e}", flush=True)
            continue
        result[name] = ptx
        if verbose:
            print(f"  ok   {name}: {len(ptx):,} characters of PTX, {time.perf_counter() - t0:.2f} s", flush=True)
    t0 = time.perf_counter()
    try:
        result["rules.example"] = example_rule_ptx(cc)
        if verbose:
            print(f"  ok   rules.example (an agent rule using every ctx feature): "
                  f"{len(result['rules.example']):,} characters of PTX, {time.perf_counter() - t0:.2f} s", flush=True)
    except Exception as e:
        failures.append(f"rules.example: {type(e).__name__}: {e}")
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(failures) + len(result)} CUDA kernels fail the PTX gate:\n  "
                           + "\n  ".join(failures))
    return result


def example_rule_ptx(cc=(9, 0)):
    """PTX of an agent rule that uses every feature a rule has on the GPU
    (columns, draws, the neighbour walk with distances, a substance's value,
    gradient and secretion, divide and die), compiled from a small CPU
    simulation's argument types."""
    from ... import Box, Simulation
    from ...rules import compile_for_gpu

    sim = Simulation(Box.cube(60.0), seed=1, dt=1.0, device="cpu")
    sim.add_substance("o2", diffusion=100.0, decay=0.1, spacing=20.0, initial=1.0)
    cells = sim.add_agents("cells", [[10.0, 10.0, 10.0], [15.0, 10.0, 10.0]], diameter=8.0)
    rule = _EXAMPLE_RULE()
    cells.behaviours += [rule]
    return compile_for_gpu(cells.behaviours[-1], sim, cells, cc)


def _EXAMPLE_RULE():
    from ... import agent_rule

    @agent_rule(reads=("diameter",), writes=("position", "age"), columns={"age": ("float64", 0.0)})
    def example(a, ctx):
        a.age += ctx.dt
        k = 0
        near = 0.0
        for n in ctx.neighbours(12.0):
            if n.diameter > 0.0:
                k += 1
                near += n.distance + n.dx * 0.0 + n.uid * 0
        gx, gy, gz = ctx.gradient("o2")
        a.position[0] += 0.1 * gx + 0.01 * ctx.normal(1)
        c = ctx.concentration("o2")
        ctx.secrete("o2", 0.5 * c)
        if k > 3 and ctx.uniform(0) < 0.01:
            a.die()
        elif a.diameter > 20.0 and near > 0.0:
            a.divide()
    return example


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m biosim.kernels.cuda.ptx", description=__doc__.splitlines()[0])
    p.add_argument("--cc", default="9.0", help="compute capability (default 9.0: H100, H200)")
    args = p.parse_args(argv)
    cc = tuple(int(x) for x in args.cc.split("."))
    t0 = time.perf_counter()
    try:
        ptx = compile_all(cc, verbose=True)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{len(ptx)} CUDA kernels compile to PTX for sm_{cc[0]}{cc[1]} with no float atomics "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
