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
        ("forces._mass", F._mass, f"void({F2}, {F2}, {F1}, int64, float64, float64, float64, float64, {I1})"),
        ("forces._clamp", F._clamp, f"void({F2}, int64, {T3F}, {T3F})"),
        ("forces._wrap_into", F._wrap_into, f"void({F2}, int64, {T3F}, {T3F})"),
        ("forces._outside", F._outside, f"void({F2}, int64, {T3F}, {T3F}, {B1}, {I1})"),
        ("_launch._flags_to_counts", L._flags_to_counts, f"void({B1}, int64, {I1})"),
        ("_launch._scatter_nonzero", L._scatter_nonzero, f"void({B1}, int64, {I1}, {I1})"),
        ("_launch._fill_f64", L._fill_f64, f"void({F1}, float64, int64)"),
        ("grid._mark_survivors", G._mark_survivors, f"void({I1}, int64, {I1}, int64, {I1})"),
        ("behaviours._grow", K._grow, f"void({I32}, int64, {F1}, int64, float64, {F1}, float64, {B1}, {I1})"),
        ("behaviours._divide", K._divide,
         f"void({I1}, int64, {F2}, {F1}, {I1}, int64, int64, int64, float64, float64, {F2}, {F1})"),
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
         f"void({I32}, int64, {I1}, int8[::1], {F1}, int64, float64, {F1}, {B1}, {F1}, int8[::1], {B1}, int64, "
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
    for dt in ("float64", "int64", "int32", "uint8", "boolean", "float32"):
        a2 = f"{dt}[:, ::1]"
        out.append((f"grid._gather_rows[{dt}]", G._gather_rows, f"void({a2}, {I1}, int64, {a2})"))
        out.append((f"grid._copy_rows[{dt}]", G._copy_rows, f"void({a2}, int64, {a2})"))
        out.append((f"grid._compact_rows[{dt}]", G._compact_rows, f"void({a2}, {I1}, int64, {a2})"))
    for law, kernel in F.FORCE_KERNELS.items():
        out.append((f"forces.FORCE_KERNELS[{law!r}]", kernel,
                    f"void({T3F}, {I32}, {F2}, boolean, int64, {I1}, {I1}, {I1}, {T3F}, {T3F}, {T3I}, {T3F}, "
                    f"{T3B}, float64, {F2}, {I1}, int64, int64, {F2})"))
    return out


FLOAT_ATOMIC_ADD = re.compile(r"\b(?:atom|red)\.[a-z.]*add\.f(?:32|64)\b")


def compile_all(cc=(9, 0), verbose=False):
    """Compile every kernel to PTX for compute capability ``cc``; returns
    {name: ptx}.  Raises RuntimeError naming the kernels that fail to
    compile or add floats with atomics."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        raise RuntimeError("compile_all needs real compilation: unset NUMBA_ENABLE_CUDASIM")
    import numba.cuda.dispatcher as dispatcher

    # kernels that call device functions ask for the current device; there is none here
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
    result, failures = {}, []
    for name, kernel, sig in _signatures():
        t0 = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            if verbose:
                print(f"  FAIL {name}: {e}", flush=True)
            continue
        if FLOAT_ATOMIC_ADD.search(ptx):
            failures.append(f"{name}: adds floats with atomics ({FLOAT_ATOMIC_ADD.search(ptx).group(0)}): "
                            f"the sum's order would change from run to run")
        result[name] = ptx
        if verbose:
            print(f"  ok   {name}: {len(ptx):,} characters of PTX, {time.perf_counter() - t0:.2f} s", flush=True)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(failures) + len(result)} CUDA kernels fail the PTX gate:\n  "
                           + "\n  ".join(failures))
    return result


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
