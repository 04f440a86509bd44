"""One simulation on several MPI ranks: the box cut into slabs along x.

``mpiexec -n R python script.py`` runs a script unchanged: a Simulation
created under an MPI launcher with more than one rank (or given
``comm=`` a communicator of more than one rank) decomposes its box when
``run()`` starts.  Every rank runs the same script, so each holds the same
populations, behaviours, substances and parameters; only the agents are
divided.

How a step stays bit-identical to one process
---------------------------------------------
Rank r owns the agents whose x lies in its slab ``[bounds[r], bounds[r+1])``
(µm; slab faces lie on a lattice of cells at least one interaction range
wide, so a slab is never thinner than that range).  At the start of each
step it receives from the other ranks an *aura*: copies of every column of
their agents within ``width`` µm of its slab (across a periodic face too).
It then runs the whole step (behaviours, mechanics, boundary, substances)
on its own agents and the aura together, exactly as one process would.  An
own agent's result depends only on agents within one neighbour reach per
phase that reads neighbours, so the aura is as wide as those reaches
summed (grid cells included, plus a margin for movement within the step):
the outer aura agents come out wrong, the own ones exactly as in one
process -- the neighbour grid uses the global lattice and agent count
(:class:`biosim.space.UniformGrid` ``layout_n``), and every sum runs in the
canonical order (by cell, then uid), which a subset of the agents that
holds every neighbour preserves.  The aura is recomputed, not trusted:
after the commit its rows are dropped, the own agents that left the slab
migrate to their new owner, and the next step receives a fresh aura.

* Births: daughters of own mothers only; uids are those one process would
  give, from the daughters' parent uids gathered from every rank (commit
  order is by parent uid).  Deaths: an own agent's removal is decided
  exactly (an aura attacker acts as in one process).
* Substances: each rank advances the x-planes of the grid whose voxel
  centres lie in its slab (:class:`SlabGrid`).  It holds every agent in
  those voxels (own or aura), so it sums their queued sources itself, in
  the canonical order; the explicit solver exchanges one ghost plane either
  side per sub-step, the implicit one passes its x lines' Thomas
  recurrences from rank to rank.  Before each step a rank receives the planes its
  slab and aura read.  The diffusion work is divided; the grid's array is
  still whole-sized on every rank (current where the rank reads it).
* Actions, records and writers see the whole simulation: when one fires the
  own agents of every rank are gathered onto every rank (in uid order),
  it runs there, and the ranks keep their slabs again.  Rank 0 writes the
  files.  ``add_action(fn, every, local=True)`` skips the gather: the
  action runs on each rank's own agents.
* The slabs are re-balanced by agent count every ``rebalance_every`` steps
  when the largest holds 10% more than the mean.

The aura's width is checked, not assumed: a neighbour query wider than the
reach the aura was built for, or an agent near a face two ranks share that
moved farther in one step than its margin, stops the run with a
DecompositionError.
"""
import os
import time as _time
from contextlib import contextmanager

import numpy as np

# environment variables MPI launchers set (MPICH/hydra, Open MPI, MVAPICH, PMIx)
_LAUNCHER_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK")
# the sweep's workers turn this off: each of their runs is one process, even
# when the workers themselves are MPI processes (mpi4py.futures)
AUTO = True


class DecompositionError(ValueError):
    """A decomposition that cannot hold (raised on every rank alike)."""


def launcher_comm():
    """MPI.COMM_WORLD when this process was started by an MPI launcher with
    more than one rank and mpi4py is installed, else None."""
    if not AUTO or not any(v in os.environ for v in _LAUNCHER_ENV):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


_HOOKED = False


def _abort_on_error():
    """Make an uncaught exception on one rank stop every rank (with its
    message printed first) instead of leaving the others waiting in a
    collective call forever."""
    global _HOOKED
    if _HOOKED:
        return
    import sys

    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        try:
            sys.stderr.flush()
            sys.stdout.flush()
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
        except Exception:
            pass
    sys.excepthook = hook
    _HOOKED = True


class Decomposition:
    """The slabs of one simulation across the ranks of ``comm`` (see the
    module docstring).  Created by the Simulation; ``sim.agents`` then holds
    this rank's own agents between steps."""

    MIN_MARGIN = 1.0  # µm: the least movement margin per step
    SLACK = 1.25  # the aura covers searches this much wider than the widest expected (growth within a step)
    REBALANCE = 1.1  # re-balance when the largest slab holds this much more than the mean

    def __init__(self, sim, comm, rebalance_every=50):
        self.sim = sim
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.rebalance_every = int(rebalance_every)
        self.bounds = None  # (size + 1,) slab faces along x (µm)
        self.n_own = 0  # rows [0, n_own) of the table are this rank's own (during a step)
        self.n_global = 0  # agents in the whole simulation (at the step's start)
        self.dmax = 0.0  # largest diameter in the whole simulation (µm), kept current within a step
        self.known_uid = 0  # uids below it live on exactly one rank (newer ones: added on every rank)
        self.reach = 0.0  # µm: the widest neighbour query the current aura covers
        self.width = 0.0  # µm: the aura's width
        self.margin = 0.0  # µm: the movement allowed in this step
        self.moved = 0.0  # µm: the largest move along x in one step so far
        self.widest = 0.0  # widest neighbour query seen (µm)
        self.widest_ratio = 0.0  # widest neighbour query seen, over the largest diameter then
        self.bytes = 0  # bytes sent by this rank (aura, migration, gathers), cumulative
        self.exchange_time = 0.0  # s
        self._sorts = 0  # times the own rows were sorted by cell (_sort_rows)
        self._start_x = None
        _abort_on_error()

    # -- collectives --------------------------------------------------------------
    def allreduce_max(self, value):
        from mpi4py import MPI

        return self.comm.allreduce(value, op=MPI.MAX)

    def _alltoall(self, sends):
        self.bytes += sum(sum(a.nbytes for a in d.values()) for i, d in enumerate(sends) if d and i != self.rank)
        return self.comm.alltoall(sends)

    # -- ownership ----------------------------------------------------------------
    def owner(self, x):
        """Rank owning each x (µm): its slab; outside the box, the nearest."""
        return np.searchsorted(self.bounds[1:-1], x, side="right")

    def _lattice(self, cutoff):
        """(cells, edge): the x-lattice slab faces lie on, cells at least
        ``cutoff`` µm wide (the whole box edge at most)."""
        box = self.sim.box
        length = float(box.length[0])
        cells = int(max(1, np.floor(length / cutoff))) if cutoff > 0 else int(max(1, self.size * 64))
        return cells, length / cells

    def _cutoff(self):
        sim = self.sim
        if sim.mechanics is None:
            return max(self.widest, 0.0)
        return max(sim.mechanics.cutoff(self.dmax), self.widest)

    def _balance(self, everywhere=False):
        """Slab faces on the lattice with about equal agent counts (from a
        histogram summed over the ranks, or this rank's own when
        ``everywhere``: every rank holds every agent; the same on every
        rank).  Refuses more ranks than lattice cells."""
        cutoff = self._cutoff()
        cells, edge = self._lattice(cutoff)
        if cells < self.size:
            raise DecompositionError(
                f"cannot cut the box's x edge of {self.sim.box.length[0]:g} µm into {self.size} slabs at least "
                f"one interaction range ({cutoff:g} µm) wide: it holds {cells}; run on at most {cells} ranks "
                f"or make the box longer along x")
        t = self.sim.agents
        lower = float(self.sim.box.lower[0])
        k = np.clip(np.floor((t.position[:len(t), 0] - lower) / edge), 0, cells - 1).astype(np.int64)
        hist = np.bincount(k, minlength=cells).astype(np.int64)
        if not everywhere:
            hist = self.comm.allreduce(hist)
        cum = np.cumsum(hist)
        total = int(cum[-1]) if cells else 0
        cuts = np.empty(self.size + 1, np.int64)
        cuts[0], cuts[-1] = 0, cells
        for r in range(1, self.size):  # the first cell where the running count reaches r/size of the total
            c = int(np.searchsorted(cum, total * r / self.size, side="left")) + 1 if total else (cells * r) // self.size
            cuts[r] = min(max(c, cuts[r - 1] + 1), cells - (self.size - r))
        self.bounds = lower + cuts.astype(np.float64) * edge
        self.bounds[-1] = float(self.sim.box.upper[0])

    def _too_thin(self):
        cutoff = self._cutoff()
        return cutoff > 0 and np.diff(self.bounds).min() < cutoff * (1 - 1e-12)

    def check(self):
        """Re-cut the slabs when one became thinner than the interaction
        range (cells grew); DecompositionError (on every rank: the values
        are global) when they cannot be cut that wide."""
        if self._too_thin():
            self._balance()
        if self._too_thin():  # pragma: no cover - _balance refuses first
            thin = np.diff(self.bounds)
            r = int(np.argmin(thin))
            raise DecompositionError(f"rank {r}'s slab is {thin[r]:g} µm thick along x, thinner than the "
                                     f"interaction range {self._cutoff():g} µm; run on fewer ranks or make the "
                                     f"box longer along x")

    # -- rows -------------------------------------------------------------------------
    def _columns(self, rows=None):
        t = self.sim.agents
        if rows is None:
            rows = np.arange(len(t))
        return t.take(rows)

    def _restore(self, parts):
        """The table becomes the concatenation of ``parts`` (dicts of columns)."""
        t = self.sim.agents
        parts = [p for p in parts if p and len(p["uid"])]
        if not parts:
            t.restore({name: t[name][:0] for name in t.columns}, t.next_uid)
            return
        cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        t.restore(cols, t.next_uid)

    def adopt(self):
        """At ``run()``'s start: rows added since the last decomposition (on
        every rank, by the script) are kept by their slab's rank only; the
        slabs are cut if there are none yet; own agents outside the slab
        migrate."""
        t0 = _time.perf_counter()
        t = self.sim.agents
        n = len(t)
        d = float(t.diameter[:n].max()) if n else 0.0
        self.dmax = self.allreduce_max(d)
        if self.bounds is None:  # every rank holds every agent (the script added them on each)
            self.known_uid = 0
            self._balance(everywhere=True)
        self.check()
        new = t.uid[:n] >= self.known_uid
        keep = ~new | (self.owner(t.position[:n, 0]) == self.rank)
        if not keep.all():
            t.keep(np.flatnonzero(keep))
        self.known_uid = t.next_uid
        self._migrate()
        self.exchange_time += _time.perf_counter() - t0

    def _migrate(self):
        """Send own agents outside this rank's slab to their owners."""
        t = self.sim.agents
        n = len(t)
        dest = self.owner(t.position[:n, 0])
        leaving = dest != self.rank
        sends = [None] * self.size
        if leaving.any():
            rows = np.flatnonzero(leaving)
            for r in np.unique(dest[rows]):
                sends[int(r)] = self._columns(rows[dest[rows] == r])
        got = self._alltoall(sends)
        if leaving.any():
            t.keep(np.flatnonzero(~leaving))
        for g in got:
            if g:
                t.extend(g)
        self.n_own = len(t)

    # -- the step -----------------------------------------------------------------------
    def _aura_width(self):
        """(reach, width, margin): the widest neighbour query the aura
        covers, its width and the movement it allows within the step (µm).
        The width is one hop (the two grid cells either side that a search
        of that reach visits) and the margin per phase that reads
        neighbours (the behaviours running this step that search, the
        mechanics, its extra force terms), plus one voxel spacing and one
        margin (the voxels whose sources a rank sums).  The margin is what
        the behaviours that move agents declare (``max_move``) plus the
        mechanics' cap; where one of them is unknown, at least four times
        the largest move seen so far near a shared face and half the reach
        (the whole reach until an agent moved)."""
        sim = self.sim
        reach = max(self._cutoff(), self.widest, self.widest_ratio * self.dmax)
        hops = (sim.mechanics is not None) + len(sim.force_terms)
        move = 0.0
        unknown = sim.mechanics is not None and not np.isfinite(sim.mechanics.max_displacement)
        if sim.mechanics is not None and not unknown:
            move += sim.mechanics.max_displacement
        for pop in sim.populations.values():
            for b in pop.behaviours:
                if sim.step % b.every == 0:
                    r = b.search_radius(sim)
                    hops += r is None or r > 0
                    reach = max(reach, r or 0.0)
                    m = b.max_move(sim, b.every * sim.dt)
                    unknown |= m is None
                    move += m or 0.0
        reach *= self.SLACK
        margin = max(self.MIN_MARGIN, self.SLACK * move)
        if unknown:  # a guess, checked after the step (moved_check)
            margin = max(margin, 4 * self.moved, 0.5 * reach if self.moved else reach)
        hop = 0.0
        if reach > 0:
            # a search of up to ``reach`` visits the cells up to k = 1 over (cells at least that wide),
            # or k = 2 over where the grid halves its x-cells: at most two unhalved cells either side
            dims = sim._grid._layout(reach, max(self.n_global, 1), np.inf)
            hop = 2.0 * float(sim.box.length[0]) / float(dims[0])
        spacing = max([float(np.max(s.spacing)) for s in sim.substances.values()] + [0.0])
        return reach, hops * (hop + margin) + spacing + margin, margin

    def _sort_rows(self, t, n):
        """Every ``reorder_every`` steps, the own rows (alone in the table
        between steps) sorted by the cells of the last neighbour grid, as one
        process permutes its rows within the grid build (memory locality for
        the kernels that read by row; results do not depend on row order).
        A rank keeps its own rows first, so the grid itself never permutes."""
        sim = self.sim
        g = sim._grid
        if n < 2 or g.builds == 0 or (self._sorts and sim.step % sim.reorder_every):
            return  # the first step after a grid exists, then every reorder_every steps
        self._sorts += 1
        from .kernels.cpu import grid as KG

        cell = np.empty(n, np.int64)
        KG.assign_cells(t.position, n, g.box.lower, g.inv_h, g.dims, g.periodic, cell)
        if np.any(cell[1:] < cell[:-1]):  # else in cell order already
            t.permute(np.argsort(cell, kind="stable"))

    def begin_step(self):
        """Before the step's neighbour search: the global count and largest
        diameter, the aura's width, and the aura itself (rows after the own
        ones)."""
        t = self.sim.agents
        n = len(t)
        self._sort_rows(t, n)
        t0 = _time.perf_counter()
        d = float(t.diameter[:n].max()) if n else 0.0
        counts = self.comm.allgather((n, d))
        self.n_global = sum(c[0] for c in counts)
        self.dmax = max(c[1] for c in counts)
        self.n_own = n
        self.reach, self.width, self.margin = self._aura_width()
        sends = [None] * self.size
        if n:
            x = t.position[:n, 0]
            for r in range(self.size):
                if r != self.rank:
                    mask = self._near(x, r)
                    if mask.any():
                        sends[r] = self._columns(np.flatnonzero(mask))
        for g in self._alltoall(sends):
            if g:
                t.extend(g)
        for sub in self.sim.substances.values():
            self._fill(sub)
        self._start_x = t.position[:n, 0].copy()
        self.exchange_time += _time.perf_counter() - t0

    def _near(self, x, r):
        """Whether x (µm) lies within the aura of rank r's slab (periodic
        images too)."""
        lo, hi = self.bounds[r] - self.width, self.bounds[r + 1] + self.width
        near = (x >= lo) & (x < hi)
        if self.sim.boundary == "periodic":
            length = float(self.sim.box.length[0])
            near |= ((x + length >= lo) & (x + length < hi)) | ((x - length >= lo) & (x - length < hi))
        return near

    def query(self, radius):
        """A neighbour query of ``radius`` µm during the step: refused when
        the aura was built for less."""
        self.widest = max(self.widest, float(radius))
        if self.dmax > 0:
            self.widest_ratio = max(self.widest_ratio, float(radius) / self.dmax)
        if radius > self.reach * (1 + 1e-12):
            raise DecompositionError(
                f"a neighbour search of {radius:g} µm at step {self.sim.step} is wider than the {self.reach:g} µm "
                f"the MPI aura was built for ({self.SLACK:g} x the widest search seen so far, or the "
                f"interaction range, or what the behaviours' search_radius(sim) declare); results could differ "
                f"from one process, so the run stops. Give your own behaviours a search_radius(sim) method, or "
                f"raise biosim.parallel.Decomposition.SLACK in the script (now {self.SLACK:g})")

    def diameters_changed(self):
        """After a behaviour that writes diameters: the largest one again
        (the grid's cutoff follows it as in one process)."""
        t = self.sim.agents
        d = float(t.diameter[:self.n_own].max()) if self.n_own else 0.0
        self.dmax = self.allreduce_max(d)

    def moved_check(self):
        """After the boundary phase: the own agents near a face this rank
        shares with another moved less than the aura's margin along x (else
        the step may differ from one process).  An agent that started
        farther from every shared face than the aura's width plus its move
        is read by no other rank and reads no aura agent: it may move more
        (a closed box's wall pushing the cells beside it, far from any
        other rank)."""
        t = self.sim.agents
        m = self.n_own
        dx = np.abs(t.position[:m, 0] - self._start_x[:m]) if m else np.zeros(0)
        periodic = self.sim.boundary == "periodic"
        if periodic and m:
            length = float(self.sim.box.length[0])
            dx = np.minimum(dx, length - dx)
        faces = [float(self.bounds[i]) for i, shared in ((self.rank, self.rank > 0 or periodic),
                                                         (self.rank + 1, self.rank < self.size - 1 or periodic))
                 if shared]
        if faces and m:
            near = np.min([np.abs(self._start_x[:m] - f) for f in faces], axis=0)
            if periodic:  # the box's two x faces are one face
                near = np.minimum(near, float(self.sim.box.length[0]) - near)
            dx = dx[near < self.width + dx]
        else:
            dx = dx[:0]
        most = self.allreduce_max(float(dx.max()) if dx.size else 0.0)
        if most > self.margin:
            raise DecompositionError(f"an agent moved {most:g} µm along x in step {self.sim.step}, more than "
                                     f"the {self.margin:g} µm margin of the MPI aura; results from here could "
                                     f"differ from one process, so the run stops. Give your own behaviours "
                                     f"that move agents a max_move(sim, dt) method, cap the mechanics' "
                                     f"max_displacement, or raise biosim.parallel.Decomposition.SLACK in the "
                                     f"script (now {self.SLACK:g})")
        self.moved = max(self.moved, most)

    def daughter_uids(self, parents):
        """uids for this rank's daughters (``parents``: their mothers' uids in
        commit order, by parent uid first) and the number born on all ranks:
        the uids one process gives, counting the daughters of smaller parent
        uids on every rank first."""
        everyone = self.comm.allgather(parents)
        offset = np.zeros(parents.size, np.int64)
        for r, other in enumerate(everyone):
            if r != self.rank and other.size and parents.size:
                offset += np.searchsorted(other, parents, side="left")
        uids = self.sim.agents.next_uid + offset + np.arange(parents.size, dtype=np.int64)
        return uids, sum(int(p.size) for p in everyone)

    def owns_rows(self, parents):
        """Mask: which of ``parents`` (uids) are own agents of this rank."""
        t = self.sim.agents
        own = np.sort(t.uid[:self.n_own])
        pos = np.minimum(np.searchsorted(own, parents), max(own.size - 1, 0))
        return (own.size > 0) & (own[pos] == parents) if own.size else np.zeros(parents.size, bool)

    def end_step(self, born):
        """After the commit: drop the aura (own rows are the first ``n_own``
        survivors and the ``born`` daughters at the end), migrate, and every
        ``rebalance_every`` steps re-balance."""
        t0 = _time.perf_counter()
        t = self.sim.agents
        n = len(t)
        t.keep(np.concatenate([np.arange(self.n_own), np.arange(n - born, n)]))
        self.known_uid = t.next_uid
        if self.rebalance_every and self.sim.step % self.rebalance_every == 0:
            counts = self.comm.allgather(len(t))
            if max(counts) > self.REBALANCE * max(np.mean(counts), 1.0):
                self._balance()
            self.check()
        self._migrate()
        self.exchange_time += _time.perf_counter() - t0

    # -- the whole simulation on every rank ------------------------------------------------
    @contextmanager
    def gathered(self, changes=False):
        """Every rank holds the whole simulation (own agents of every rank,
        in uid order) inside the block; afterwards its own agents again (with
        ``changes``, those whose x lies in its slab: what the block left)."""
        t0 = _time.perf_counter()
        self.whole()
        mine = self._columns()
        self.bytes += sum(a.nbytes for a in mine.values()) * (self.size - 1)
        parts = [p for p in self.comm.allgather(mine) if len(p["uid"])]
        if parts:
            cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            order = np.argsort(cols["uid"], kind="stable")
            self.sim.agents.restore({k: v[order] for k, v in cols.items()}, self.sim.agents.next_uid)
        self.exchange_time += _time.perf_counter() - t0
        try:
            yield
        finally:
            t0 = _time.perf_counter()
            t = self.sim.agents
            if changes:
                n = len(t)
                t.keep(np.flatnonzero(self.owner(t.position[:n, 0]) == self.rank))
                self.known_uid = t.next_uid
            else:
                self._restore([mine])
            self.n_own = len(t)
            self.exchange_time += _time.perf_counter() - t0

    # -- substances ----------------------------------------------------------------------
    def plane_starts(self, sub):
        """(size + 1,) x-plane ranges of ``sub``'s grid: rank r owns the planes
        ``[first[r], first[r+1])`` whose centres lie in its slab."""
        owner = self.owner(sub.voxel_centres(0))
        return np.searchsorted(owner, np.arange(self.size + 1)).astype(np.int64)

    def slab(self, sub):
        """This rank's x-planes of ``sub`` for one advance."""
        return SlabGrid(self, sub, self.plane_starts(sub))

    def _held(self, sub, r):
        """The x-planes rank r reads during a step (indices, increasing from
        the slab's lower side, wrapped in a periodic grid): its slab and
        aura, plus the stencil of the gradient at the outermost (three
        planes either side)."""
        nx, h, lower = sub.shape[0], sub.spacing, float(sub.lower[0])
        a = int(np.floor((self.bounds[r] - self.width - lower) / h - 0.5)) - 3
        b = int(np.floor((self.bounds[r + 1] + self.width - lower) / h - 0.5)) + 5
        if not sub.periodic:
            return np.arange(max(a, 0), min(b, nx))
        return np.arange(nx) if b - a >= nx else np.arange(a, b) % nx

    def _fetch(self, wants, first, source):
        """x-planes between ranks: ``wants[s]`` the planes rank s needs (the
        same lists on every rank), each sent by the rank that owns it under
        the ranges ``first``; ``source(indices)`` this rank's planes.
        Returns [(indices, planes)] received."""
        sends = [None] * self.size
        for s, want in enumerate(wants):
            if s != self.rank and want.size:
                idx = want[np.searchsorted(first, want, side="right") - 1 == self.rank]
                if idx.size:
                    sends[s] = (idx, source(idx))
                    self.bytes += sends[s][1].nbytes
        return [g for g in self.comm.alltoall(sends) if g is not None]

    def _fill(self, sub):
        """Before a step: the planes each rank reads (:meth:`_held`) made
        current from their owners at the last advance."""
        if sub._fresh is None:
            return
        first = sub._fresh
        wants = []
        for s in range(self.size):
            held = self._held(sub, s)
            wants.append(held[(held < first[s]) | (held >= first[s + 1])])
        for idx, planes in self._fetch(wants, first, lambda idx: sub._c[idx]):
            sub._c[idx] = planes

    def whole(self):
        """Every substance's whole grid current on every rank (its owners'
        planes gathered): inside ``gathered()`` and when ``run()`` returns."""
        from mpi4py import MPI

        for sub in self.sim.substances.values():
            if sub._fresh is None:
                continue
            plane = sub.shape[1] * sub.shape[2]
            sizes = np.diff(sub._fresh) * plane
            flat = sub._c.reshape(sub._c.size)
            self.comm.Allgatherv(MPI.IN_PLACE, [flat, sizes, sub._fresh[:-1] * plane, MPI.DOUBLE])
            self.bytes += int(sizes[self.rank]) * 8 * (self.size - 1)
            sub._fresh = None


class SlabGrid:
    """This rank's x-planes ``[p0, p1)`` of one substance for one advance
    (:meth:`Substance._substeps` with ``slab``): the planes whose centres lie
    in its slab, which hold every voxel its own and aura agents' sources
    reach, so their queued sums are complete here.  Each plane is computed
    with the same kernels on the same values as in one process:

    * sources, decay and the Dirichlet layers are per voxel;
    * the explicit solver steps a buffer of the own planes with one ghost
      plane either side, received from their owners before each sub-step
      (the kernel takes the planes' global indices, so each voxel takes the
      same branch as in the whole grid);
    * the implicit solver's x lines cross the slabs: their Thomas
      recurrences pass from rank to rank (:meth:`x_solve`); the y and z
      lines lie within a plane.

    The grid's array stays whole-sized on every rank; after the advance only
    the own planes are current (``Substance._fresh``).  Before the next step
    each rank receives the planes its agents read (:meth:`Decomposition._fill`),
    and ``gathered()`` or the end of ``run()`` make the grid whole."""

    TAG = 30000  # x_solve's point-to-point tags: TAG .. TAG + 31, above what scripts usually use

    def __init__(self, dd, sub, first):
        self.dd = dd
        self.sub = sub
        self.first = first
        self.p0, self.p1 = int(first[dd.rank]), int(first[dd.rank + 1])
        self.n = self.p1 - self.p0
        self.nx = sub.shape[0]
        self.plane = sub.shape[1] * sub.shape[2]
        # the explicit buffer's ghost planes: one either side, none beyond a closed face
        self.ghost_lo = int(self.n > 0 and (sub.periodic or self.p0 > 0))
        self.ghost_hi = int(self.n > 0 and (sub.periodic or self.p1 < self.nx))
        self.explicit = False
        self._wants = None  # _ghost_wants(), once per advance

    def sources(self, queued):
        """The queued sums (``Substance._source_sums``) at this rank's own
        voxels, indexed within its planes; None if it owns none of them."""
        if queued is None:
            return None
        voxels, sums, used = queued
        lo, hi = self.p0 * self.plane, self.p1 * self.plane
        mine = voxels[(voxels >= lo) & (voxels < hi)] - lo
        if not mine.size:
            return None
        return mine, [s if s is self.sub._NONE else s[lo:hi] for s in sums], used

    def work(self, c, explicit):
        """(current, spare) arrays of the sub-steps: the own planes of ``c``
        (implicit), or a buffer of them with the ghost planes and its spare
        (explicit)."""
        self.explicit = explicit
        if not explicit:
            return c[self.p0:self.p1], None
        buf = np.empty((self.ghost_lo + self.n + self.ghost_hi,) + c.shape[1:])
        buf[self.ghost_lo:self.ghost_lo + self.n] = c[self.p0:self.p1]
        return buf, np.empty_like(buf)

    def own(self, cur):
        return cur[self.ghost_lo:self.ghost_lo + self.n] if self.explicit else cur

    def store(self, c, cur):
        if self.explicit:
            c[self.p0:self.p1] = self.own(cur)

    def set_layers(self, own, layers, dval):
        """``kernels.cpu.diffusion.set_layers`` on the own planes."""
        for f in layers:
            axis, side = divmod(f, 2)
            if axis == 0:
                g = 0 if side == 0 else self.nx - 1
                if self.p0 <= g < self.p1:
                    own[g - self.p0] = dval[0][side]
                continue
            index = [slice(None)] * 3
            index[axis] = 0 if side == 0 else own.shape[axis] - 1
            own[tuple(index)] = dval[axis][side][self.p0:self.p1]

    def _ghost_wants(self):
        """Per rank, the planes its explicit buffer's ghosts hold (the same
        on every rank; what :meth:`Decomposition._fetch` asks for)."""
        first, nx = self.first, self.nx
        wants = []
        for s in range(self.dd.size):
            lo, hi = int(first[s]), int(first[s + 1])
            g = []
            if hi > lo and (self.sub.periodic or lo > 0):
                g.append((lo - 1) % nx)
            if hi > lo and (self.sub.periodic or hi < nx):
                g.append(hi % nx)
            wants.append(np.array([x for x in g if not lo <= x < hi], np.int64))
        return wants

    def _ghosts(self, buf):
        """The buffer's ghost planes from their owners (a collective call)."""
        dd, first, nx = self.dd, self.first, self.nx
        if self._wants is None:  # the same for every sub-step of this advance
            self._wants = self._ghost_wants()
        got = dd._fetch(self._wants, first, lambda idx: buf[self.ghost_lo + idx - self.p0])
        planes = {int(g): p for idx, ps in got for g, p in zip(idx, ps)}
        for side, g in ((0, (self.p0 - 1) % nx), (1, self.p1 % nx)):
            if not (self.ghost_lo if side == 0 else self.ghost_hi):
                continue
            value = buf[self.ghost_lo + g - self.p0] if self.p0 <= g < self.p1 else planes[g]
            buf[0 if side == 0 else -1] = value

    def ftcs_step(self, buf, out, D, dt, bounds):
        """One explicit sub-step of the buffer into ``out``: ghosts first."""
        from .kernels.cpu import diffusion as K

        self._ghosts(buf)
        if not self.n:
            return
        btype, bflux, dval = bounds
        btype, bflux = btype.copy(), bflux.copy()
        for side, ghost in ((0, self.ghost_lo), (1, self.ghost_hi)):
            if ghost:  # an inner face: its values come from the ghost plane
                btype[side], bflux[side] = 0, 0.0
        x0 = self.p0 - self.ghost_lo
        planes = np.arange(x0, self.p1 + self.ghost_hi) % self.nx
        K.ftcs_step(buf, out, D, self.sub.spacing, dt, btype, bflux, dval[0],
                    np.ascontiguousarray(dval[1][:, planes]), np.ascontiguousarray(dval[2][:, planes]),
                    x0, self.nx)

    def x_solve(self, own, r, cp, inv, zz, vr, zden, periodic, add_lo, add_hi):
        """The implicit x sweep (``lod_sweep`` along x) of the own planes
        ``own``: the Thomas recurrences pass from rank to rank along the x
        lines, the forward one up the ranks and the backward one down, one
        (y, z) plane of values per face.  The columns go in chunks, so a
        rank works on the next chunk while its neighbour takes the last one
        (a pipeline).  A periodic grid's correction then needs each line's
        first and last values (two broadcasts).  ``add_lo``/``add_hi``
        (1, ny * nz) are the x faces' boundary terms."""
        from .kernels.cpu import diffusion as K

        dd, first, nx, plane = self.dd, self.first, self.nx, self.plane
        holders = [s for s in range(dd.size) if first[s + 1] > first[s]]
        lo, hi = np.ascontiguousarray(add_lo[0]), np.ascontiguousarray(add_hi[0])
        block = own.reshape(self.n, plane)
        if self.n:
            at = holders.index(dd.rank)
            below = holders[at - 1] if at > 0 else None
            above = holders[at + 1] if at + 1 < len(holders) else None
            nchunk = int(min(16, max(1, plane // 512)))
            cuts = (plane * np.arange(nchunk + 1)) // nchunk
            edge = np.empty(plane)
            pending = []
            for k in range(nchunk):  # forward, up the ranks
                c0, c1 = int(cuts[k]), int(cuts[k + 1])
                if below is not None:
                    dd.comm.Recv(edge[c0:c1], source=below, tag=self.TAG + k)
                K.thomas_forward_piece(block[:, c0:c1], self.p0, nx, r, inv, edge[c0:c1], lo[c0:c1], hi[c0:c1])
                if above is not None:
                    out = block[-1, c0:c1].copy()
                    pending.append((dd.comm.Isend(out, dest=above, tag=self.TAG + k), out))
            for k in range(nchunk):  # backward, down the ranks
                c0, c1 = int(cuts[k]), int(cuts[k + 1])
                if above is not None:
                    dd.comm.Recv(edge[c0:c1], source=above, tag=self.TAG + nchunk + k)
                K.thomas_backward_piece(block[:, c0:c1], self.p0, nx, cp, edge[c0:c1])
                if below is not None:
                    out = block[0, c0:c1].copy()
                    pending.append((dd.comm.Isend(out, dest=below, tag=self.TAG + nchunk + k), out))
            for req, _ in pending:
                req.Wait()
            dd.bytes += sum(out.nbytes for _, out in pending)
        if periodic and nx > 1:
            ends = np.empty((2, plane))
            if self.n and self.p0 == 0:
                ends[0] = block[0]
            if self.n and self.p1 == nx:
                ends[1] = block[-1]
            dd.comm.Bcast(ends[0], root=holders[0])
            dd.comm.Bcast(ends[1], root=holders[-1])
            if self.n:
                K.periodic_piece(block, self.p0, nx, zz, vr, zden, ends[0], ends[1])
