"""Substances: diffusion-decay on cell-centred grids over the box.

A substance of voxel edge ``spacing`` (µm) has ``extent / spacing`` voxels per
axis, voxel centres at ``lower + (i + 0.5) * spacing``, array axes x, y, z.
Each base step is split into diffusion sub-steps (one unless the substance
has its own ``dt`` or the explicit solver needs more); each sub-step applies
its share of the sources queued by behaviours during the step, decays
exactly (``c *= exp(-decay h)``), then diffuses with the chosen solver.

Solvers:

* ``"implicit"`` (the default): locally one-dimensional backward Euler
  (x, y, z sweeps, Thomas algorithm per line, as PhysiCell's BioFVM),
  unconditionally stable, first order in time.
* ``"explicit"``: forward Euler with the 7-point Laplacian (FTCS); it
  sub-steps automatically to stay positive and stable
  (``dt_sub <= 1 / (9 D / h^2)``, the worst case of a corner voxel with
  three Dirichlet faces) and says so once.
"""
import fractions
import math
import os
import numbers
import warnings

import numpy as np

from . import _validate as V
from .kernels.cpu import diffusion as K

FACES = ("x-", "x+", "y-", "y+", "z-", "z+")
SOLVERS = ("implicit", "explicit")


class Neumann:
    """Flux boundary: ``flux`` is the amount per µm² per minute entering the
    domain through the face (0, the default: no flux)."""

    code = 0

    def __init__(self, flux=0.0):
        self.flux = V.real("flux", flux)

    def __repr__(self):
        return f"Neumann(flux={self.flux!r})"

    def to_dict(self):
        return {"class": "Neumann", "flux": self.flux}


class Dirichlet:
    """Fixed value on the face: a number, or a function ``f(x, y, z, t)`` of
    the face point (µm) and time (min) returning values for numpy arrays."""

    code = 1

    def __init__(self, value):
        if callable(value):
            self.value = value
        else:
            v = V.real("value", value)
            self.value = v

    def __repr__(self):
        return f"Dirichlet({self.value!r})"

    def to_dict(self):
        return {"class": "Dirichlet", "value": self.value if not callable(self.value) else repr(self.value)}


class Periodic:
    """The face wraps to the opposite one (set automatically in a periodic box)."""

    code = 2

    def __repr__(self):
        return "Periodic()"

    def to_dict(self):
        return {"class": "Periodic"}


def _fraction(x):
    return fractions.Fraction(x).limit_denominator(10**6)


def max_voxels():
    """Voxels one substance may have: physical memory / (8 bytes x 8 copies)."""
    try:
        mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        mem = 16 * 2**30
    return mem / 64.0


def check_spacing(spacing, box):
    """Voxel counts per axis; refuses a spacing that does not divide every
    extent, naming the nearest that do."""
    spacing = V.positive("spacing", spacing)
    length = box.length
    with np.errstate(over="ignore"):
        counts = length / spacing
        total = float(np.prod(counts))
    limit = max_voxels()
    if not np.isfinite(total) or total > limit:
        raise ValueError(f"spacing {spacing!r} µm is too fine for the box extents {length.tolist()} µm: "
                         f"{total:.3g} voxels, more than the {limit:.3g} this machine's memory can hold "
                         f"(8 bytes per voxel, several copies for the solver)")
    rounded = np.rint(counts)
    if np.all(np.abs(counts - rounded) <= 1e-9 * np.maximum(counts, 1)) and np.all(rounded >= 1):
        return rounded.astype(np.int64)
    g = _fraction(length[0])
    for L in length[1:]:
        f = _fraction(L)
        g = fractions.Fraction(math.gcd(g.numerator * f.denominator, f.numerator * g.denominator),
                               g.denominator * f.denominator)
    g = float(g)
    k = g / spacing
    options = sorted({g / max(1, math.floor(k)), g / max(1, math.ceil(k))})
    raise ValueError(f"spacing {spacing!r} µm does not divide the box extents {length.tolist()} µm; "
                     f"the nearest spacings that do are {', '.join(f'{o:g}' for o in options)}")


# Most diffusion sub-steps per base step: beyond, a step would run for hours
# (dt = 1e-300 asked for 1e299); use the implicit solver or a larger dt.
MAX_SUBSTEPS = 100_000
# Largest D dt / h^2 of an implicit sub-step (10^7 covers D = 10^5 µm²/min,
# dt = 100 min, h = 1 µm); beyond, the Thomas solve loses its precision.
MAX_IMPLICIT_NUMBER = 1e12


class Substance:
    """A diffusing, decaying substance on a cell-centred grid (see module doc).

    ``concentration`` is the live 3D array (x, y, z): writes into it take
    effect.  Use :meth:`sample` for values and gradients at any points.
    """

    def __init__(self, sim, name, diffusion, decay, spacing, initial, boundary, solver, dt, decay_split=False,
                 dirichlet_layer=False):
        self.sim = sim
        self.name = name
        self.unit = None  # of the concentration (Simulation.add_substance sets it)
        self.diffusion = V.positive("diffusion", diffusion, allow_zero=True)
        self.decay = V.positive("decay", decay, allow_zero=True)
        self.shape = tuple(int(s) for s in check_spacing(spacing, sim.box))
        self.spacing = float(spacing)
        self.solver = V.choice("solver", solver, SOLVERS)
        self.lower = sim.box.lower.copy()
        self.voxel_volume = self.spacing ** 3
        if dt is None:
            self.dt = None
        else:
            self.dt = V.positive("dt", dt)
        self.faces = self._faces(boundary, sim.boundary == "periodic")
        self.decay_split = V.boolean("decay_split", decay_split)
        self.dirichlet_layer = V.boolean("dirichlet_layer", dirichlet_layer)
        if self.decay_split and self.solver != "implicit":
            raise ValueError(f"substance {name!r}: decay_split=True is BioFVM's splitting of decay into the "
                             f"implicit solver's three sweeps; it needs solver='implicit', got {solver!r}")
        # BioFVM's Dirichlet nodes: faces whose outer voxel layer holds the value
        self._layers = tuple(f for f, c in enumerate(self.faces) if isinstance(c, Dirichlet)) \
            if self.dirichlet_layer else ()
        self._check_substeps(sim.dt)  # refuses unbounded work now, not at the first step
        self._c = self._initial(initial)
        self._sources = None
        self._count = None  # a GPU: canonical_source_sums' two int64 arrays of a voxel each (the CPU needs none)
        self._spare = None
        self._told = False
        self._lod_cache = None  # (dt, diffusion, face types) and the LOD factors for them
        self._dev = None  # GPU backends: the grid on the device (and its spare for the explicit solver)
        self._dev_spare = None
        self._dev_where = "host"  # which copy is current: "host", "device" or "both"
        self._lod_dev = None  # the LOD factors on the device, for the key of _lod_cache
        self._faces_dev = {}  # boundary terms last sent to the device (_on_device): host and device copies
        # under MPI: the voxel ranges per axis (Decomposition.grid_starts) whose owners alone hold current
        # values since the last advance; None while every rank holds the whole grid current
        self._fresh = None

    # -- set-up ---------------------------------------------------------------
    def _faces(self, boundary, periodic):
        if periodic:
            if boundary is not None and not isinstance(boundary, Periodic):
                raise ValueError(f"boundary of substance {self.name!r}: the box is periodic, so every face is "
                                 f"periodic; got {boundary!r}")
            return [Periodic()] * 6
        if boundary is None:
            boundary = Neumann()
        if isinstance(boundary, (Neumann, Dirichlet)):
            return [boundary] * 6
        if isinstance(boundary, dict):
            faces = [Neumann()] * 6
            for key, cond in boundary.items():
                if key in ("x", "y", "z"):
                    keys = (key + "-", key + "+")
                elif key in FACES:
                    keys = (key,)
                else:
                    raise ValueError(f"boundary face must be one of {', '.join(FACES)} or x, y, z; got {key!r}")
                if not isinstance(cond, (Neumann, Dirichlet)):
                    raise TypeError(f"boundary[{key!r}] must be bs.Neumann(...) or bs.Dirichlet(...), got {cond!r}")
                for k in keys:
                    faces[FACES.index(k)] = cond
            return faces
        raise TypeError(f"boundary must be bs.Neumann(flux), bs.Dirichlet(value) or a dict of faces "
                        f"({', '.join(FACES)}) to those; got {boundary!r}")

    def voxel_centres(self, axis):
        """Voxel centre coordinates (µm) along axis 0, 1 or 2."""
        return self.lower[axis] + (np.arange(self.shape[axis]) + 0.5) * self.spacing

    def _initial(self, initial):
        if callable(initial):
            x, y, z = np.meshgrid(*(self.voxel_centres(a) for a in range(3)), indexing="ij")
            c = np.asarray(initial(x, y, z), dtype=np.float64)
            c = np.broadcast_to(c, self.shape).copy() if c.ndim == 0 else c
        elif isinstance(initial, numbers.Real) and not isinstance(initial, bool):
            c = np.full(self.shape, float(initial))
        else:
            try:
                c = np.array(initial, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"initial must be a number, an array of shape {self.shape} or a function "
                                f"f(x, y, z); got {type(initial).__name__}") from None
        if c.shape != self.shape:
            raise ValueError(f"initial for substance {self.name!r} must have the grid's shape {self.shape} "
                             f"(box extent / spacing {self.spacing:g}); got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"initial for substance {self.name!r} must be finite; it holds NaN or inf")
        return np.ascontiguousarray(c)

    # -- public ---------------------------------------------------------------
    @property
    def concentration(self):
        """The live (nx, ny, nz) array of concentrations (a view: writes take
        effect; on a GPU backend it is the host copy, brought up to date when
        read and sent back to the device before the next diffusion step)."""
        self._to_host()
        self._dev_where = "host"
        return self._c

    @concentration.setter
    def concentration(self, value):
        self._to_host()
        self._c[...] = value
        self._dev_where = "host"

    def _to_host(self):
        """Bring the host copy up to date if the device holds a newer grid."""
        if self._dev_where == "device":
            self._dev.copy_to_host(self._c)
            self._dev_where = "both"

    def _current(self):
        """The host grid, up to date, for reading only (writers, checkpoints:
        unlike ``concentration`` it does not count as changed, so it is not
        sent back to the device)."""
        self._to_host()
        return self._c

    def _device_grid(self, write=True):
        """The grid on the device, uploaded first if the host copy is newer;
        counted as changed when ``write``."""
        if self._dev is None:
            self._dev = self.sim.backend.empty(self._c.shape, np.float64)
            self._dev_where = "host"
        if self._dev_where == "host":
            self._dev.copy_to_device(self._c)
            self._dev_where = "both"
        if write:
            self._dev_where = "device"
        return self._dev

    def total(self):
        """Total amount: sum of concentration times voxel volume."""
        self._to_host()
        return float(self._c.sum() * self.voxel_volume)

    @property
    def periodic(self):
        """Whether the grid wraps (every face periodic, in a periodic box)."""
        return isinstance(self.faces[0], Periodic)

    def sample(self, points, gradient=False):
        """Trilinear values at ``points`` (m, 3) µm; with ``gradient=True`` also
        the gradient (m, 3) in amount per µm⁴ (concentration per µm): the
        gradient at the voxel centres (central differences, second-order
        one-sided ones at the outermost centres) interpolated trilinearly,
        exact for a linear field everywhere in the box.  Beyond the
        outermost centres values and gradients are held constant (wrapped
        in a periodic box)."""
        p = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
        rows = np.arange(len(p))
        value = np.empty(len(p))
        grad = np.empty((len(p), 3))
        self._to_host()
        K.sample(self._c, self.lower, self.spacing, self.periodic, p, rows, value, grad, bool(gradient))
        return (value, grad) if gradient else value

    def sample_rows(self, rows, gradient=False):
        """Trilinear values (and with ``gradient=True`` gradients, per µm) at
        the centres of the agents at ``rows``, computed where the backend's
        kernels live: numpy arrays on the CPU, device arrays on a GPU (the
        grid and the positions stay there).  Returns value, or (value,
        grad) with grad of shape (m, 3)."""
        B = self.sim.backend
        m = len(rows)
        value = B.empty(m, np.float64)
        grad = B.empty((m if gradient else 1, 3), np.float64)
        if B.on_device:
            c = self._device_grid(write=False)
        else:
            c = self._c
            rows = np.ascontiguousarray(rows, dtype=np.int64)
        B.diffusion.sample(c, self.lower, self.spacing, self.periodic, self.sim.agents.col("position", False), rows,
                           value, grad, bool(gradient))
        return (value, grad) if gradient else value

    def _check_substeps(self, dt):
        """ValueError if a base step ``dt`` (min) needs more than MAX_SUBSTEPS
        diffusion sub-steps (this substance's dt, or the explicit solver's
        stability limit), or an implicit sub-step has D dt / h^2 beyond
        MAX_IMPLICIT_NUMBER."""
        ratio, why = dt / (self.dt if self.dt is not None else dt), f"its dt = {self.dt!r} min"
        if self.solver == "explicit" and self.diffusion > 0:
            limit = self.spacing ** 2 / (9.0 * self.diffusion)
            if limit == 0 or dt / limit > ratio:
                ratio = math.inf if limit == 0 else dt / limit
                why = (f"the explicit solver's stability limit h^2 / (9 D) = {limit:.3g} min (spacing "
                       f"{self.spacing:g} µm, diffusion {self.diffusion:g} µm²/min)")
        if self.solver == "implicit":
            alpha = self.diffusion * min(dt, self.dt or dt) / self.spacing ** 2
            if not alpha <= MAX_IMPLICIT_NUMBER:
                raise ValueError(f"substance {self.name!r}: the implicit solver's D dt / h^2 = {alpha:.3g} (diffusion "
                                 f"{self.diffusion:g} µm²/min, sub-step {min(dt, self.dt or dt):g} min, spacing "
                                 f"{self.spacing:g} µm) exceeds {MAX_IMPLICIT_NUMBER:g}, where the tridiagonal "
                                 f"solve loses all precision (mass is not kept); the grid is then uniform after "
                                 f"one step: use a smaller diffusion or dt")
        if not ratio <= MAX_SUBSTEPS:
            raise ValueError(f"substance {self.name!r} would take {ratio:.3g} diffusion sub-steps per step of "
                             f"{dt:g} min, from {why}; at most {MAX_SUBSTEPS:,} are allowed (use the implicit "
                             f"solver, a larger dt or a coarser spacing)")

    def substeps(self, dt):
        """(number of diffusion steps, their length) for a base step ``dt``."""
        sub = self.dt if self.dt is not None else dt
        n = max(1, int(math.ceil(dt / sub - 1e-9)))
        self._check_substeps(dt)
        if self.solver == "explicit" and self.diffusion > 0:
            limit = self.spacing ** 2 / (9.0 * self.diffusion)
            if dt / n > limit:
                n = int(math.ceil(dt / limit))
                if not self._told:
                    self._told = True
                    warnings.warn(f"substance {self.name!r}: the explicit solver takes {n} sub-steps of "
                                  f"{dt / n:.3g} min per step of {dt:g} min (stability limit "
                                  f"h^2 / (9 D) = {limit:.3g} min)", stacklevel=6)
        return n, dt / n

    def __repr__(self):
        return (f"Substance({self.name!r}, diffusion={self.diffusion:g} µm²/min, decay={self.decay:g} /min, "
                f"grid {self.shape} of {self.spacing:g} µm, {self.solver})")

    def to_dict(self):
        return {"diffusion": self.diffusion, "decay": self.decay, "spacing": self.spacing, "unit": self.unit,
                "shape": list(self.shape), "solver": self.solver, "dt": self.dt, "decay_split": self.decay_split,
                "dirichlet_layer": self.dirichlet_layer,
                "boundary": {f: b.to_dict() for f, b in zip(FACES, self.faces)}}

    # -- engine ---------------------------------------------------------------
    def queue(self, rows, added=None, secretion=None, target=None, uptake=None):
        """Queue sources from the agents at ``rows`` (their current voxels) for
        this step: ``added`` concentration (amount / voxel volume), and the
        implicit terms ``secretion * dt`` (towards ``target``) and
        ``uptake * dt``, each an array per agent already scaled by its volume
        fraction.  Applied at the start of the substance phase, summed per
        voxel in a fixed order.  On a GPU backend ``rows`` and the terms may
        be device arrays (the terms also numbers; ``target`` a number or one
        per agent)."""
        if self.sim.backend.on_device:
            self._queue_device(rows, (added, secretion, target, uptake))
            return
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        vox = np.empty(rows.size, dtype=np.int64)
        K.voxel_of(self.sim.agents.position, rows, self.lower, self.spacing,
                   np.array(self.shape, dtype=np.int64), vox)
        zero = np.zeros(rows.size)
        terms = []
        for arr in (added, secretion, None if secretion is None else secretion * target, uptake):
            terms.append(zero if arr is None else np.broadcast_to(np.asarray(arr, dtype=np.float64), rows.shape))
        if self._sources is None:
            self._sources = []
        # the order of the sums within a voxel: this call, then the agent's uid
        key = (np.int64(len(self._sources)) << np.int64(40)) | self.sim.agents.uid[rows]
        self._sources.append((vox, key, terms))

    def _queue_device(self, rows, terms):
        """queue() on a GPU backend: each entry's voxel, key and four terms
        computed on the device and kept there until the substance phase."""
        B = self.sim.backend
        KD = B.diffusion
        if not hasattr(rows, "copy_to_host"):
            rows = B.to_device(np.ascontiguousarray(rows, dtype=np.int64))
        m = rows.size
        if m == 0:
            return
        added, secretion, target, uptake = (a if a is None or np.isscalar(a) or hasattr(a, "copy_to_host")
                                            else B.to_device(np.asarray(a, dtype=np.float64)) for a in terms)
        product = target  # the secretion towards the target: secretion x target, per agent
        if secretion is not None and not np.isscalar(target):  # a target per agent (models.Rules)
            product = B.to_device(np.asarray(B.to_host(secretion), dtype=np.float64)
                                  * np.asarray(B.to_host(target), dtype=np.float64))
        t = self.sim.agents
        if self._sources is None:
            self._sources = []
        vox = B.empty(m, np.int64)
        KD.voxel_of(t.col("position", False), rows, self.lower, self.spacing, self.shape, vox)
        key = B.empty(m, np.int64)
        KD.source_keys(rows, t.col("uid", False), len(self._sources), key)
        values = B.empty((4, m), np.float64)
        given = (added is not None, secretion is not None, secretion is not None, uptake is not None)
        towards = (secretion, target) if np.isscalar(product) else (product, 1.0)
        for k, (src, factor) in enumerate(((added, 1.0), (secretion, 1.0), towards, (uptake, 1.0))):
            KD.set_term(values, k, 0.0 if src is None else src, factor if src is not None else 1.0)
        self._sources.append((vox, key, values, given))

    def _source_sums_device(self):
        """_source_sums() on a GPU backend: (touched voxels, their four sums
        as rows of a (4, m) device array, used flags), summed on the device
        in the canonical order (by queueing call, then uid; no float
        atomics)."""
        B = self.sim.backend
        calls, self._sources = self._sources, None
        used = [any(c[3][k] for c in calls) for k in range(4)]
        if len(calls) == 1:
            vox, key, values = calls[0][:3]
        else:
            total = sum(c[0].size for c in calls)
            vox, key, values = B.empty(total, np.int64), B.empty(total, np.int64), B.empty((4, total), np.float64)
            off = 0
            for v, k, x, _ in calls:
                m = v.size
                vox[off:off + m].copy_to_device(v)
                key[off:off + m].copy_to_device(k)
                for term in range(4):
                    values[term, off:off + m].copy_to_device(x[term])
                off += m
        nvox = self._c.size
        if self._count is None:
            self._count = (B.empty(nvox + 1, np.int64), B.empty(nvox + 1, np.int64))
        voxels, sums = B.diffusion.canonical_source_sums(vox, key, values, used, nvox, *self._count)
        return voxels, sums, used

    _NONE = np.zeros(1)  # stands for a source term nobody queued

    def _source_sums(self, span=None):
        """Sums of the queued source terms (added, S dt, S c* dt, U dt) per
        touched voxel, or None when nothing is queued: (voxels, [four
        arrays, entry t the sums of voxels[t]], used flags); with ``span``
        (lo, hi) those of the flat voxel indices in [lo, hi) only (on the
        CPU; a GPU sums every voxel).  Each voxel
        sums its sources in the canonical order, by queueing call (behaviours
        run in a fixed order) and then by the agent's uid, so the result
        depends neither on the thread count nor on the order of the table's
        rows.  No grid-sized array: the sums count entries per range of
        4,096 voxels."""
        if not self._sources:
            return None
        if self.sim.backend.on_device:
            return self._source_sums_device()
        calls, self._sources = self._sources, None
        one = len(calls) == 1
        vox = calls[0][0] if one else np.concatenate([v for v, _, _ in calls])
        key = calls[0][1] if one else np.concatenate([k for _, k, _ in calls])
        values = np.empty((4, vox.size))
        for k in range(4):
            np.concatenate([t[k] for _, _, t in calls], out=values[k])
        used = values.any(axis=1)
        voxels = np.empty(vox.size, dtype=np.int64)
        sums = [np.empty(vox.size) if used[k] else self._NONE for k in range(4)]
        lo, hi = (0, -1) if span is None else span
        m = K.canonical_source_sums(vox, key, values, used, self._c.size, voxels, *sums, lo, hi)
        return voxels[:m], [s[:m] if used[k] else s for k, s in enumerate(sums)], used

    def _boundary_arrays(self, time):
        btype = np.array([0 if f in self._layers else c.code for f, c in enumerate(self.faces)], dtype=np.int64)
        bflux = np.array([f.flux if isinstance(f, Neumann) else 0.0 for f in self.faces])
        nx, ny, nz = self.shape
        dval = [np.zeros((2, ny, nz)), np.zeros((2, nx, nz)), np.zeros((2, nx, ny))]
        cx, cy, cz = (self.voxel_centres(a) for a in range(3))
        lo, hi = self.sim.box.lower, self.sim.box.upper
        for f, cond in enumerate(self.faces):
            if not isinstance(cond, Dirichlet):
                continue
            axis, side = divmod(f, 2)
            plane = lo[axis] if side == 0 else hi[axis]
            if callable(cond.value):
                a, b = [(cy, cz), (cx, cz), (cx, cy)][axis]
                A, B = np.meshgrid(a, b, indexing="ij")
                P = np.full_like(A, plane)
                xyz = [(P, A, B), (A, P, B), (A, B, P)][axis]
                vals = np.broadcast_to(np.asarray(cond.value(*xyz, time), dtype=np.float64), A.shape)
                if not np.all(np.isfinite(vals)):
                    raise ValueError(f"Dirichlet value of substance {self.name!r} on face {FACES[f]} "
                                     f"is not finite at t = {time} min")
                dval[axis][side] = vals
            else:
                dval[axis][side] = cond.value
        return btype, bflux, dval

    def advance(self, dt, time):
        """Over ``dt`` minutes, in each of the diffusion sub-steps: the share of
        the sources queued during the step, exact decay, then diffusion.
        Sources are applied per sub-step so fast uptake and fast diffusion
        stay coupled (PhysiCell's 0.01 min diffusion step); decaying before
        diffusing keeps Dirichlet values exact at steady state.  ``time``
        (min) is the step's start; a Dirichlet ``f(x, y, z, t)`` is taken
        at the time each sub-step's solve lands on (its end for the implicit
        solver, its start for the explicit one)."""
        # under MPI each rank advances its own voxels (biosim.parallel.BlockGrid)
        part = None if self.sim._dd is None else self.sim._dd.block(self)
        span = None if part is None or self.sim.backend.on_device else part.span()
        queued = self._source_sums(span)
        self._substeps(dt, time, queued if part is None else part.sources(queued, span), self.sim.backend.on_device,
                       part)
        if part is not None:
            self._fresh = part.first

    def _substeps(self, dt, time, queued, dev, part=None):
        """advance()'s sub-steps on the host grid with the CPU kernels, or
        (``dev``) on the device grid with the backend's: the same calls with
        the same arguments.  What goes to the device: face-sized boundary
        terms, when they change.  With ``part`` (under MPI) only this rank's
        voxels are advanced, with the same kernels on the same values
        (ghost layers and the lines that cross blocks from the other ranks)."""
        B = self.sim.backend
        KS = B.diffusion if dev else K
        n, h = self.substeps(dt)
        k = self.decay * h / 3.0 if self.decay_split else 0.0  # BioFVM: decay inside each of the 3 sweeps
        if self.decay == 0 or (self.decay_split and self.diffusion > 0):
            decay = 1.0
        else:
            decay = (1.0 / (1.0 + k)) ** 3 if self.decay_split else math.exp(-self.decay * h)
        timed = any(isinstance(f, Dirichlet) and callable(f.value) for f in self.faces)
        bounds = None
        if (self.diffusion > 0 or self._layers) and not timed:
            bounds = self._bounds(time, dev)
        c = self._device_grid() if dev else self._c
        explicit = self.solver == "explicit" and self.diffusion > 0
        if explicit and dev and self._dev_spare is None:
            self._dev_spare = B.empty(self._c.shape, np.float64)
        if explicit and not dev and part is None and self._spare is None:
            self._spare = np.empty_like(self._c)
        cur, other = c, (self._dev_spare if dev else self._spare)
        if part is not None:
            cur, other = part.work(c)
        for sub in range(n):
            own = cur if part is None else part.own(cur)
            flat = own.reshape(own.size)
            if queued is not None:  # the sums per touched voxel
                KS.apply_sources(flat, queued[0], *queued[1], queued[2], float(n))
            if decay != 1.0:
                KS.scale(flat, decay)
            if timed and (self.diffusion > 0 or self._layers):
                # f(x, y, z, t) at the time each sub-step lands on: the end of
                # the sub-step for the implicit solver (backward Euler), its
                # start for the explicit one (forward Euler)
                bounds = self._bounds(time + (sub + 1) * h if self.solver == "implicit" else time + sub * h, dev)
            if self._layers:
                self._set_layers(own, bounds[1][2], KS, part)
            if self.diffusion == 0:
                continue
            if explicit and part is not None:
                part.ftcs_step(cur, other, self.diffusion, h, bounds[1])
                cur, other = other, cur
            elif explicit:
                KS.ftcs_step(cur, other, self.diffusion, self.spacing, h, *bounds[1][:2], *bounds[1][2])
                cur, other = other, cur
            else:
                self._lod(cur, h, k, bounds, dev, part)
            if self._layers:
                self._set_layers(cur if part is None else part.own(cur), bounds[1][2], KS, part)
        if part is not None:
            part.store(c, cur)
        elif cur is not c:  # the live grid stays the same array
            if dev:
                c.copy_to_device(cur)
            else:
                c[...] = cur
        if dev:
            self._dev_where = "device"

    def _set_layers(self, c, dval, KS, part):
        """The Dirichlet layers (``dirichlet_layer``) of the grid, or of this
        rank's voxels ``c`` under MPI."""
        if part is None:
            KS.set_layers(c, self._layers, dval)
        else:
            part.set_layers(c, self._layers, dval)

    def _bounds(self, time, dev):
        """((btype, bflux, dval) on the host, the same where the solvers run):
        on a GPU the device copies, sent only when they changed."""
        btype, bflux, dval = self._boundary_arrays(time)
        if not dev:
            return (btype, bflux, dval), (btype, bflux, dval)
        return (btype, bflux, dval), (self._on_device("btype", btype), self._on_device("bflux", bflux),
                                      [self._on_device(("dval", axis), d) for axis, d in enumerate(dval)])

    def _on_device(self, key, values):
        """Boundary terms (face-sized host arrays) on the device, sent only
        when they changed: constant faces go once, a time-dependent
        Dirichlet face each time it is evaluated."""
        held = self._faces_dev.get(key)
        if held is None or held[0].shape != values.shape or not np.array_equal(held[0], values):
            held = self._faces_dev[key] = (np.array(values), self.sim.backend.to_device(np.ascontiguousarray(values)))
        return held[1]

    def _lod_factors(self, dt, btype, k=0.0):
        """Per axis: the Thomas factors of the line system for this ``dt``,
        diffusion coefficient, face types and per-sweep decay ``k``, cached
        (they change only with one of those)."""
        key = (dt, self.diffusion, tuple(int(b) for b in btype), k)
        cache = self._lod_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        r = self.diffusion * dt / self.spacing ** 2
        nx, ny, nz = self.shape
        faces = ((1, ny * nz), (nx, nz), (nx * ny, 1))
        out = []
        for axis in range(3):
            n = self.shape[axis]
            cp, inv, zz = np.empty(n), np.empty(n), np.empty(n)
            vr, zden = K.thomas_coefficients(n, r, btype[2 * axis], btype[2 * axis + 1], cp, inv, zz, k)
            out.append((r, cp, inv, zz, vr, zden, np.zeros(faces[axis])))
        self._lod_cache = (key, out)
        return out

    def _lod(self, c, dt, k, bounds, dev, part=None):
        """One locally one-dimensional implicit step of the grid ``c``: x, y,
        then z sweeps (one thread per line on a GPU), each with decay ``k``
        inside; a face's Dirichlet layer (``dirichlet_layer``) is set before
        every sweep.  On a GPU the Thomas factors go to the device once per
        (dt, diffusion, faces, k).  With ``part`` (MPI), ``c`` is this
        rank's voxels: the lines that cross blocks pass their recurrences
        from rank to rank, the others are solved here, with their faces'
        terms for these voxels (:meth:`biosim.parallel.BlockGrid.solve`)."""
        (btype, bflux, dval), (_, _, dval_here) = bounds
        KS = self.sim.backend.diffusion if dev else K
        factors = self._lod_factors(dt, btype, k)
        if dev and (self._lod_dev is None or self._lod_dev[0] is not self._lod_cache):
            self._lod_dev = (self._lod_cache, [tuple(self.sim.backend.to_device(a) for a in f[1:4]) for f in factors])
        nx, ny, nz = self.shape
        views = (c.reshape(1, nx, ny * nz), c, c.reshape(nx * ny, nz, 1)) if part is None else None
        faces = ((1, ny * nz), (nx, nz), (nx * ny, 1))
        for axis, (r, cp, inv, zz, vr, zden, zero) in enumerate(factors):
            if dev:
                cp, inv, zz = self._lod_dev[1][axis]
            if axis and self._layers:
                self._set_layers(c, dval_here, KS, part)
            blo, bhi = btype[2 * axis], btype[2 * axis + 1]
            adds = []
            for side, b in ((0, blo), (1, bhi)):
                if b == 1:
                    adds.append(np.ascontiguousarray((2.0 * r) * dval[axis][side].reshape(faces[axis])))
                elif b == 0 and bflux[2 * axis + side] != 0.0:
                    adds.append(np.full(faces[axis], dt * bflux[2 * axis + side] / self.spacing))
                else:
                    adds.append(zero)
            if dev:
                adds = [self._on_device(("lod", axis, side), a) for side, a in enumerate(adds)]
            if part is not None:
                part.solve(axis, c, r, cp, inv, zz, vr, zden, blo == 2, adds[0], adds[1])
                continue
            KS.lod_sweep(views[axis], r, cp, inv, zz, vr, zden, blo == 2, adds[0], adds[1])
