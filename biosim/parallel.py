"""One simulation on several MPI ranks: the box cut into blocks.

``mpiexec -n R python script.py`` runs a script unchanged: a Simulation
created under an MPI launcher with more than one rank (or given
``comm=`` a communicator of more than one rank) decomposes its box when
``run()`` starts.  Every rank runs the same script, so each holds the same
populations, behaviours, substances and parameters; only the agents are
divided.

The blocks
----------
The ranks form a grid of ``px x py x pz`` blocks (row-major: rank
``(i * py + j) * pz + k`` holds block (i, j, k)).  Along each axis the
block faces lie on a lattice of cells at least one interaction range wide,
so a block is never thinner than that range, and they are placed so each
slice of blocks holds about the same number of agents (re-balanced as the
tissue grows).  The grid of ranks is chosen at start-up to make the aura
smallest (2 ranks: two slabs along x; 4 ranks in a cube: 2 x 2 x 1), among
the grids whose blocks fit the lattice; ``Decomposition.GRID`` (or the
environment variable ``BIOSIM_RANK_GRID=2x2x1``) sets it instead.

How a step stays bit-identical to one process
---------------------------------------------
Rank r owns the agents whose position lies in its block (µm).  At the
start of each step it receives from the other ranks an *aura*: copies of
every column of their agents within ``width`` µm of its block (across a
periodic face too, corners included).  It then runs the whole step
(behaviours, mechanics, boundary, substances) on its own agents and the
aura together, exactly as one process would.  An own agent's result
depends only on agents within one neighbour reach per phase that reads
neighbours, so the aura is as wide as those reaches summed (grid cells
included, plus a margin for movement within the step), and at least as
wide as the voxels whose sources the rank sums reach past its block (one
voxel spacing, plus the reaches of the behaviours that search: sources
are queued by behaviours, before the mechanics): the outer aura
agents come out wrong, the own ones exactly as in one process -- the
neighbour grid uses the global lattice and agent count
(:class:`biosim.space.UniformGrid` ``layout_n``), and every sum runs in the
canonical order (by cell, then uid), which a subset of the agents that
holds every neighbour preserves.  The aura is recomputed, not trusted:
after the commit its rows are dropped, the own agents that left the block
migrate to their new owner, and the next step receives a fresh aura.

* Mechanics: pair forces are computed for the own agents only; the aura's
  copies keep a zero force, since nothing reads where they would move (the
  behaviours queued their sources, with their voxels, before the mechanics,
  and the aura is dropped at the step's end).  With neurites every row's
  force is computed: a first element's update reads where its soma moved.
* Births: daughters of own mothers only; uids are those one process would
  give, from the daughters' parent uids gathered from every rank (commit
  order is by parent uid).  Deaths: an own agent's removal is decided
  exactly (an aura attacker acts as in one process).
* Substances: each rank advances the voxels of the grid whose centres lie
  in its block (:class:`BlockGrid`).  It holds every agent in those voxels
  (own or aura), so it sums their queued sources itself, in the canonical
  order; the explicit solver exchanges one ghost layer per face two ranks
  share per sub-step, the implicit one passes the Thomas recurrences of
  the lines that cross blocks from rank to rank.  Before each step a rank
  receives the voxels its block and aura read.  The diffusion work is
  divided; the grid's array is still whole-sized on every rank (current
  where the rank reads it).
* Actions, records and writers see the whole simulation: when an action
  fires the own agents of every rank are gathered onto every rank (in uid
  order), it runs there, and the ranks keep their blocks again;
  ``add_action(fn, every, local=True)`` skips the gather: the action runs
  on each rank's own agents.  Records, writers and checkpoint saves gather
  it on rank 0 only, which samples the records (broadcasting their values)
  and writes the files.
* The block faces are re-balanced by agent count every ``rebalance_every``
  steps when the largest block holds 10% more than the mean.

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
            import time

            time.sleep(1.0)  # the launcher forwards the message before MPI_Abort tears the job down
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)
        except Exception:
            pass
    sys.excepthook = hook
    _HOOKED = True


AXES = "xyz"


def _selector(box):
    """numpy index for the voxels of ``box`` (three arrays of global
    indices): a slice where an axis's indices are a contiguous run, an
    array where one axis's are not (wrapped in a periodic grid), np.ix_
    where several are not."""
    index = []
    for ix in box:
        if ix.size and int(ix[-1]) - int(ix[0]) == ix.size - 1 and np.all(np.diff(ix) == 1):
            index.append(slice(int(ix[0]), int(ix[-1]) + 1))
        else:
            index.append(ix)
    if sum(not isinstance(i, slice) for i in index) > 1:
        return np.ix_(*box)
    return tuple(index)


def _within(box, block):
    """The part of ``box`` (three index arrays) inside ``block`` ([(lo, hi)]
    per axis): what its owner sends and the receiver expects alike."""
    return [ix[(ix >= lo) & (ix < hi)] for ix, (lo, hi) in zip(box, block)]


def _slices(block):
    """numpy index of a block given as [(lo, hi)] per axis."""
    return tuple(slice(lo, hi) for lo, hi in block)


def _ranks_grid(text, size):
    """``GRID`` or ``BIOSIM_RANK_GRID`` ("2x2x1" or three ints) as a tuple of
    three ranks per axis whose product is ``size``."""
    try:
        dims = tuple(int(v) for v in (text.lower().split("x") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or int(np.prod(dims)) != size:
        raise DecompositionError(f"the grid of ranks {text!r} (Decomposition.GRID or BIOSIM_RANK_GRID) must be "
                                 f"three positive counts of ranks along x, y and z whose product is the {size} "
                                 f"ranks, such as '{size}x1x1'")
    return dims


class Decomposition:
    """The blocks of one simulation across the ranks of ``comm`` (see the
    module docstring).  Created by the Simulation; ``sim.agents`` then holds
    this rank's own agents between steps."""

    MIN_MARGIN = 1.0  # µm: the least movement margin per step
    SLACK = 1.25  # the aura covers searches this much wider than the widest expected (growth within a step)
    EXACT_REACH = True  # no SLACK in a step whose searches cannot widen (see _aura_width)
    # the columns a behaviour may write in such a step: none that a search's range follows (diameters,
    # types, PhysiCell's per-cell adhesion ranges set by rules, ...)
    FIXED_REACH_WRITES = frozenset({"position", "motility_vector", "parent"})
    REBALANCE = 1.1  # re-balance when the largest block holds this much more than the mean
    GRID = None  # ranks along (x, y, z), or None: BIOSIM_RANK_GRID, else the grid with the smallest aura
    SWAP_TAG = 31000  # point-to-point tags of _swap_boxes: SWAP_TAG + the wanted box's index

    def __init__(self, sim, comm, rebalance_every=50):
        self.sim = sim
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.rebalance_every = int(rebalance_every)
        self.dims = None  # (3,) ranks along each axis, fixed at the first cut
        self.coords = None  # (3,) this rank's block along each axis
        self.bounds = None  # [3 arrays of dims[a] + 1] block faces along each axis (µm)
        self._lines = None  # per axis: the communicator of the ranks that share the other two block indices
        self.n_own = 0  # rows [0, n_own) of the table are this rank's own (during a step)
        self.n_global = 0  # agents in the whole simulation (at the step's start)
        self.dmax = 0.0  # largest diameter in the whole simulation (µm), kept current within a step
        self.known_uid = 0  # uids below it live on exactly one rank (newer ones: added on every rank)
        self.reach = 0.0  # µm: the widest neighbour query the current aura covers
        self.width = 0.0  # µm: the aura's width
        self.margin = 0.0  # µm: the movement allowed in this step
        self.moved = 0.0  # µm: the largest move across a shared face's axis in one step so far
        self.widest = 0.0  # widest neighbour query seen (µm)
        self.widest_ratio = 0.0  # widest neighbour query seen, over the largest diameter then
        self.bytes = 0  # bytes sent by this rank (aura, migration, gathers), cumulative
        self.exchange_time = 0.0  # s
        self._sorts = 0  # times the own rows were sorted by cell (_sort_rows)
        self._start = None
        self._start_uid = None  # uids of the own rows at the step's start (neurite operations move rows)
        self._start_layout = -1  # the table's layout count then
        self.uid_begin = 0  # the next uid at the step's start: rows with larger uids are new in this step
        self.whole_sim = False  # inside gathered() on every rank: each holds the whole simulation
        _abort_on_error()

    # -- collectives --------------------------------------------------------------
    def allreduce_max(self, value):
        from mpi4py import MPI

        return self.comm.allreduce(value, op=MPI.MAX)

    def _alltoall(self, sends):
        self.bytes += sum(sum(a.nbytes for a in d.values()) for i, d in enumerate(sends) if d and i != self.rank)
        return self.comm.alltoall(sends)

    # -- ownership ----------------------------------------------------------------
    def block_of(self, rank):
        """(3,) the block indices of ``rank`` along x, y and z."""
        return np.unravel_index(int(rank), tuple(int(d) for d in self.dims))

    def owner(self, pos):
        """Rank owning each position (n, 3) µm: its block; outside the box,
        the nearest."""
        from .kernels.cpu import grid as KG

        faces = np.full((3, int(max(self.dims)) - 1), np.inf)  # each axis's inner block faces
        for a in range(3):
            faces[a, : int(self.dims[a]) - 1] = self.bounds[a][1:-1]
        out = np.empty(len(pos), np.int64)
        KG.block_owners(pos, faces, np.asarray(self.dims, np.int64), out)
        return out

    def _lattice(self, axis, cutoff):
        """(cells, edge): the lattice block faces along ``axis`` lie on,
        cells at least ``cutoff`` µm wide (the whole box edge at most)."""
        length = float(self.sim.box.length[axis])
        cells = int(max(1, np.floor(length / cutoff))) if cutoff > 0 else int(max(1, self.size * 64))
        return cells, length / cells

    def _cutoff(self, dmax=None):
        """The interaction range (µm): the mechanics' (at the largest
        diameter, or ``dmax``), the neurites' (a collective call then) and
        the widest search seen."""
        sim = self.sim
        cutoff = max(self.widest, 0.0)
        if sim.mechanics is not None:
            cutoff = max(cutoff, sim.mechanics.cutoff(self.dmax if dmax is None else dmax))
        if sim.neurites is not None:
            cutoff = max(cutoff, sim.neurites.reach() or 0.0)
        return cutoff

    def _choose_dims(self, cells, cutoff):
        """The grid of ranks: ``GRID`` / ``BIOSIM_RANK_GRID`` when set, else,
        among the grids whose blocks fit ``cells`` (lattice cells per axis),
        the one with the least aura surface per rank (ties: the blocks
        nearest cubes, then more ranks along x, then y).  Creates the line
        communicators (a collective call)."""
        length = [float(v) for v in self.sim.box.length]
        wanted = self.GRID if self.GRID is not None else os.environ.get("BIOSIM_RANK_GRID") or None
        if wanted is not None:
            dims = _ranks_grid(wanted, self.size)
        else:
            periodic = self.sim.boundary == "periodic"
            best = None
            for px in range(1, self.size + 1):
                for py in range(1, self.size // px + 1):
                    if self.size % (px * py):
                        continue
                    d = (px, py, self.size // (px * py))
                    if any(d[a] > cells[a] for a in range(3)):
                        continue
                    surface = sum((2 if periodic or d[a] > 2 else 1) * np.prod([length[b] / d[b] for b in range(3)
                                                                                if b != a])
                                  for a in range(3) if d[a] > 1)
                    edge = max(length[a] / d[a] for a in range(3))  # ties: the blocks nearest cubes
                    key = (round(float(surface), 9), round(edge, 9), -px, -py)
                    if best is None or key < best[0]:
                        best = (key, d)
            if best is None:
                raise DecompositionError(
                    f"cannot cut the box of {' x '.join(f'{v:g}' for v in length)} µm into {self.size} blocks at "
                    f"least one interaction range ({cutoff:g} µm) wide: its lattice holds "
                    f"{' x '.join(str(c) for c in cells)} cells along x, y and z; run on a number of ranks "
                    f"px x py x pz with px <= {cells[0]}, py <= {cells[1]} and pz <= {cells[2]}, or make the box "
                    f"larger")
            dims = best[1]
        self.dims = np.array(dims, np.int64)
        self.coords = np.array(self.block_of(self.rank), np.int64)
        self._cut = [a for a in range(3) if self.dims[a] > 1]  # the axes the ranks are cut along
        self._lines = []
        for a in range(3):
            other = [int(self.coords[b]) if b != a else 0 for b in range(3)]
            color = int(np.ravel_multi_index(other, tuple(int(d) for d in self.dims)))
            self._lines.append(self.comm.Split(color, int(self.coords[a])))

    def _balance(self, everywhere=False):
        """Block faces on each axis's lattice, with about equal agent counts
        in each slice of blocks (from histograms summed over the ranks, or
        this rank's own when ``everywhere``: every rank holds every agent;
        the same on every rank).  Refuses more blocks along an axis than
        lattice cells."""
        cutoff = self._cutoff()
        box = self.sim.box
        lattice = [self._lattice(a, cutoff) for a in range(3)]
        if self.dims is None:
            self._choose_dims([c for c, _ in lattice], cutoff)
        for a, (cells, _) in enumerate(lattice):
            if cells < self.dims[a]:
                raise DecompositionError(
                    f"cannot cut the box's {AXES[a]} edge of {box.length[a]:g} µm into {self.dims[a]} blocks at "
                    f"least one interaction range ({cutoff:g} µm) wide: it holds {cells}; run with at most "
                    f"{cells} ranks along {AXES[a]} (now {' x '.join(str(int(d)) for d in self.dims)}), or make "
                    f"the box longer along {AXES[a]}")
        t = self.sim.agents
        pos = t.position[:len(t)]
        hists = []
        for a, (cells, edge) in enumerate(lattice):
            k = np.clip(np.floor((pos[:, a] - float(box.lower[a])) / edge), 0, cells - 1).astype(np.int64)
            hists.append(np.bincount(k, minlength=cells).astype(np.int64))
        if not everywhere:
            hists = np.split(self.comm.allreduce(np.concatenate(hists)), np.cumsum([h.size for h in hists])[:-1])
        self.bounds = []
        for a, ((cells, edge), hist) in enumerate(zip(lattice, hists)):
            p = int(self.dims[a])
            cum = np.cumsum(hist)
            total = int(cum[-1]) if cells else 0
            cuts = np.empty(p + 1, np.int64)
            cuts[0], cuts[-1] = 0, cells
            for r in range(1, p):  # the lattice face where the running count comes nearest r/p of the total
                if total:
                    want = total * r / p
                    j = int(np.searchsorted(cum, want, side="left"))  # the first cell reaching it
                    c = j if j > 0 and want - cum[j - 1] < cum[min(j, cells - 1)] - want else j + 1
                else:
                    c = (cells * r) // p
                cuts[r] = min(max(c, cuts[r - 1] + 1), cells - (p - r))
            faces = float(box.lower[a]) + cuts.astype(np.float64) * edge
            faces[-1] = float(box.upper[a])
            self.bounds.append(faces)

    def _too_thin(self):
        cutoff = self._cutoff()
        return cutoff > 0 and any(self.dims[a] > 1 and np.diff(self.bounds[a]).min() < cutoff * (1 - 1e-12)
                                  for a in range(3))

    def check(self):
        """Re-cut the blocks when one became thinner than the interaction
        range (cells grew); DecompositionError (on every rank: the values
        are global) when they cannot be cut that wide."""
        if self._too_thin():
            self._balance()
        if self._too_thin():  # pragma: no cover - _balance refuses first
            raise DecompositionError(f"a block is thinner than the interaction range {self._cutoff():g} µm; "
                                     f"run on fewer ranks or make the box larger")

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
        every rank, by the script) are kept by their block's rank only; the
        blocks are cut if there are none yet; own agents outside the block
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
        keep = ~new | (self.owner(t.position[:n]) == self.rank)
        if not keep.all():
            t.keep(np.flatnonzero(keep))
        self.known_uid = t.next_uid
        self._migrate()
        self.exchange_time += _time.perf_counter() - t0

    def _migrate(self):
        """Send own agents outside this rank's block to their owners."""
        t = self.sim.agents
        n = len(t)
        dest = self.owner(t.position[:n])
        leaving = dest != self.rank
        sends = [None] * self.size
        if leaving.any():
            rows = np.flatnonzero(leaving)
            for r in np.unique(dest[rows]):
                sends[int(r)] = self._columns(rows[dest[rows] == r])
        got = self._alltoall(sends)
        if leaving.any():
            t.drop(np.flatnonzero(leaving))  # the rest keep their rows: order does not matter to any result
        for g in got:
            if g:
                t.extend(g)
        self.n_own = len(t)
    # -- the step -----------------------------------------------------------------------
    def _aura_width(self):
        """(reach, width, margin): the widest neighbour query the aura
        covers, its width and the movement it allows within the step (µm).
        The width is one margin (an own agent's move within the step) plus
        the wider of two needs: one hop (the two grid cells either side that
        a search of that reach visits) and one margin per phase that reads
        neighbours (the behaviours running this step that search, the
        mechanics, its extra force terms); and the voxels whose sources the
        rank sums: one voxel spacing past the block, plus a hop and a margin
        per searching behaviour only, since every source is queued, with
        its voxel, by a behaviour, before the mechanics.  The margin is what
        the behaviours that move agents declare (``max_move``) plus the
        mechanics' cap; where one of them is unknown, at least four times
        the largest move seen so far near a shared face and half the reach
        (the whole reach until an agent moved).  The reach is ``SLACK``
        times the widest search expected, except in a step that cannot
        widen its searches beyond what is declared: every behaviour running
        declares its search radius, writes only positions
        (``FIXED_REACH_WRITES``; not PhysiCell's per-cell adhesion ranges
        or types) and diameters whose largest it declares
        (``Behaviour.max_diameter``: the mechanics' range follows the
        largest diameter), and there are no neurites or extra force terms;
        a wider search still stops the run (:meth:`query`)."""
        sim = self.sim
        hops = (sim.mechanics is not None) + len(sim.force_terms)
        searches = 0  # the behaviours' hops: before the sources are queued
        move = 0.0
        unknown = sim.mechanics is not None and not np.isfinite(sim.mechanics.max_displacement)
        if sim.mechanics is not None and not unknown:
            move += sim.mechanics.max_displacement
        if sim.neurites is not None:
            # with the hop of the neurites' force term, two: an element's move reads its mother's move,
            # which reads her other daughter and that one's contacts (three links and a reach: within two
            # hops of at least twice the reach each); their point masses move by up to the neurites' cap
            hops += 1
            move += sim.neurites.mechanics.max_displacement
        exact = self.EXACT_REACH and sim.neurites is None and not sim.force_terms  # searches cannot widen
        dcap = self.dmax  # the largest diameter within the step, where the behaviours declare theirs
        reach = 0.0
        for pop in sim.populations.values():
            for b in pop.behaviours:
                if sim.step % b.every == 0:
                    r = b.search_radius(sim)
                    searches += r is None or r > 0
                    reach = max(reach, r or 0.0)
                    m = b.max_move(sim, b.every * sim.dt)
                    unknown |= m is None
                    move += m or 0.0
                    grown = b.max_diameter(sim, b.every * sim.dt) if "diameter" in b.writes else 0.0
                    dcap = max(dcap, grown or 0.0)
                    exact &= (r is not None and grown is not None
                              and set(b.writes) - {"diameter"} <= self.FIXED_REACH_WRITES)
        if not exact:
            dcap = self.dmax
        reach = max(reach, self._cutoff(dcap), self.widest, self.widest_ratio * dcap)
        if not exact or unknown:
            reach *= self.SLACK
        margin = max(self.MIN_MARGIN, self.SLACK * move)
        if unknown:  # a guess, checked after the step (moved_check)
            margin = max(margin, 4 * self.moved, 0.5 * reach if self.moved else reach)
        hop = 0.0
        if reach > 0:
            # a search of up to ``reach`` visits the cells up to k = 1 over (cells at least that wide),
            # or k = 2 over where the grid halves its x-cells: at most two unhalved cells either side
            dims = sim._grid._layout(reach, max(self.n_global, 1), np.inf)
            hop = max(2.0 * float(sim.box.length[a]) / float(dims[a]) for a in range(3) if self.dims[a] > 1)
        spacing = max([float(np.max(s.spacing)) for s in sim.substances.values()] + [0.0])
        hops += searches
        return reach, margin + max(hops * (hop + margin), searches * (hop + margin) + spacing), margin

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
            pos = t.position[:n]
            for r in range(self.size):
                if r != self.rank:
                    rows = np.flatnonzero(self._near(pos, r))
                    if rows.size:
                        sends[r] = self._columns(rows)
        for g in self._alltoall(sends):
            if g:
                t.extend(g)
        for sub in self.sim.substances.values():
            self._fill(sub)
        probe = self._probe(n)
        self._start = np.ascontiguousarray(probe[:, self._cut].T)  # (cut axes, n)
        self._start_uid = t.uid[:n].copy()
        self._start_layout = t.layout  # rows in place until a removal or a permutation changes it
        self.uid_begin = t.next_uid
        self.exchange_time += _time.perf_counter() - t0

    def _probe(self, m):
        """(m, 3) µm: what the movement check follows for the first ``m``
        rows: positions, and a neurite element's distal point (its midpoint
        jumps when it splits)."""
        nrt = self.sim.neurites
        return self.sim.agents.position[:m] if nrt is None else nrt.probe(m)

    def _near(self, pos, r):
        """Whether each position (n, 3) µm lies within the aura of rank r's
        block (periodic images too), as a uint8 mask."""
        from .kernels.cpu import grid as KG

        block = self.block_of(r)
        lo, hi = np.zeros(3), np.zeros(3)  # lo == hi: an axis the ranks are not cut along, not tested
        for a in range(3):
            if self.dims[a] > 1:
                lo[a] = self.bounds[a][block[a]] - self.width
                hi[a] = self.bounds[a][block[a] + 1] + self.width
        near = np.empty(len(pos), np.uint8)
        KG.in_box(pos, len(pos), lo, hi, np.asarray(self.sim.box.length, np.float64),
                  self.sim.boundary == "periodic", near)
        return near

    def force_rows(self):
        """The rows whose pair forces this step reads, as one uint8 per row,
        or None for every row: the own rows.  An aura agent's force moves
        only its aura copy, and nothing reads that copy after the mechanics
        (the behaviours queued their sources, with their voxels, before it;
        the aura is dropped at the step's end), so the aura keeps a zero
        force.  With neurites every row: a first element's update after the
        sphere mechanics reads where its soma moved, wherever in the aura."""
        n = len(self.sim.agents)
        if n == self.n_own or self.whole_sim or self.sim.neurites is not None:
            return None
        need = np.zeros(n, np.uint8)
        need[:self.n_own] = 1
        return need

    def query(self, radius):
        """A neighbour query of ``radius`` µm during the step: refused when
        the aura was built for less.  Inside ``gathered()`` (an action that
        sees the whole simulation on every rank) any query holds."""
        if self.whole_sim:
            return
        self.widest = max(self.widest, float(radius))
        if self.dmax > 0:
            self.widest_ratio = max(self.widest_ratio, float(radius) / self.dmax)
        if radius > self.reach * (1 + 1e-12):
            raise DecompositionError(
                f"a neighbour search of {radius:g} µm at step {self.sim.step} is wider than the {self.reach:g} µm "
                f"the MPI aura was built for (the widest search seen so far, or the interaction range, or what "
                f"the behaviours' search_radius(sim) declare, times {self.SLACK:g} where the step may widen its "
                f"searches); results could differ from one process, so the run stops. Give your own behaviours "
                f"a search_radius(sim) method that covers their searches, or set "
                f"biosim.parallel.Decomposition.EXACT_REACH = False and raise its SLACK in the script "
                f"(now {self.SLACK:g})")

    def diameters_changed(self):
        """After a behaviour that writes diameters: the largest one again
        (the grid's cutoff follows it as in one process)."""
        t = self.sim.agents
        d = float(t.diameter[:self.n_own].max()) if self.n_own else 0.0
        self.dmax = self.allreduce_max(d)

    def moved_check(self):
        """After the boundary phase: the own agents near a face this rank
        shares with another moved less than the aura's margin along each
        axis the ranks are cut along (else the step may differ from one
        process).  An agent that started farther from every shared face than
        the aura's width plus its move is read by no other rank and reads no
        aura agent: it may move more (a closed box's wall pushing the cells
        beside it, far from any other rank)."""
        from .kernels.cpu import grid as KG

        t = self.sim.agents
        m = self.n_own
        periodic = self.sim.boundary == "periodic"
        now = then = np.zeros(0, np.int64)
        uid0 = self._start_uid
        # every row where it started: rows only appended since (the own rows untouched), or the same uids
        same = uid0.size == m and (t.layout == self._start_layout or np.array_equal(t.uid[:m], uid0))
        if not same:  # rows added or removed in the step
            srt = np.argsort(uid0, kind="stable")
            pos = np.minimum(np.searchsorted(uid0[srt], t.uid[:m]), max(uid0.size - 1, 0))
            match = (uid0[srt][pos] == t.uid[:m]) if uid0.size else np.zeros(m, bool)
            now, then = np.flatnonzero(match), srt[pos[match]]
        faces = np.full((len(self._cut), 2), np.nan)
        for c, a in enumerate(self._cut):
            i = int(self.coords[a])
            if i > 0 or periodic:
                faces[c, 0] = float(self.bounds[a][i])
            if i < self.dims[a] - 1 or periodic:
                faces[c, 1] = float(self.bounds[a][i + 1])
        move = KG.largest_move(np.ascontiguousarray(self._probe(m)), same, now, then, self._start,
                               np.array(self._cut, np.int64), np.asarray(self.sim.box.length, np.float64),
                               periodic, faces, float(self.width))
        most = self.allreduce_max(move)
        if most > self.margin:
            raise DecompositionError(f"an agent moved {most:g} µm across the block faces of the MPI ranks in "
                                     f"step {self.sim.step}, more than the {self.margin:g} µm margin of the MPI "
                                     f"aura; results from here could differ from one process, so the run stops. "
                                     f"Give your own behaviours that move agents a max_move(sim, dt) method, cap "
                                     f"the mechanics' max_displacement, or raise "
                                     f"biosim.parallel.Decomposition.SLACK in the script (now {self.SLACK:g})")
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
        from .kernels.cpu import grid as KG

        own = self.sim.agents.uid[:self.n_own]
        if parents.size == 0 or own.size == 0:
            return np.zeros(parents.size, bool)
        lo, hi = int(parents.min()), int(parents.max())
        if hi - lo < 4 * own.size + 4096:  # uids are issued in sequence: a table over their span, one pass
            hits = np.zeros(hi - lo + 1, np.uint8)
            KG.mark_members(own, lo, hits)
            return hits[parents - lo].view(bool)
        own = np.sort(own)
        pos = np.minimum(np.searchsorted(own, parents), own.size - 1)
        return own[pos] == parents

    def end_step(self, born):
        """After the commit: drop the aura (own rows are the first ``n_own``
        survivors and the ``born`` daughters at the end), migrate, and every
        ``rebalance_every`` steps re-balance."""
        t0 = _time.perf_counter()
        t = self.sim.agents
        n = len(t)
        new = np.zeros(0, np.int64)
        if self.sim.neurites is not None and n - born > self.n_own:
            # elements the step's tree operations made (on every rank holding their parent, alike): kept by
            # the rank whose block holds them
            rest = np.arange(self.n_own, n - born)
            rest = rest[t.uid[rest] >= self.uid_begin]
            new = rest[self.owner(t.position[rest]) == self.rank]
        if new.size:
            t.keep(np.concatenate([np.arange(self.n_own), new, np.arange(n - born, n)]))
        else:
            t.keep_ends(self.n_own, born)
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
    def gathered(self, changes=False, root=None):
        """Every rank holds the whole simulation (own agents of every rank,
        in uid order) inside the block; afterwards its own agents again (with
        ``changes``, those whose position lies in its block: what the block
        left).  With ``root`` only that rank holds it (output: the records
        and writers run there); the others keep their own agents and
        substance voxels, sending them only."""
        if changes and root is not None:
            raise ValueError("gathered(changes=True) gathers on every rank")
        t0 = _time.perf_counter()
        self.whole(root)
        mine = self._columns()
        if root is None:
            self.bytes += sum(a.nbytes for a in mine.values()) * (self.size - 1)
            parts = self.comm.allgather(mine)
        else:
            if self.rank != root:
                self.bytes += sum(a.nbytes for a in mine.values())
            parts = self.comm.gather(mine, root=root)
        parts = [p for p in parts if len(p["uid"])] if parts is not None else []
        if parts:
            cols = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            order = np.argsort(cols["uid"], kind="stable")
            self.sim.agents.restore({k: v[order] for k, v in cols.items()}, self.sim.agents.next_uid)
        self.exchange_time += _time.perf_counter() - t0
        self.whole_sim = root is None
        try:
            yield
        finally:
            self.whole_sim = False
            t0 = _time.perf_counter()
            t = self.sim.agents
            if changes:
                n = len(t)
                t.keep(np.flatnonzero(self.owner(t.position[:n]) == self.rank))
                self.known_uid = t.next_uid
            elif root is None or self.rank == root:
                self._restore([mine])
            self.n_own = len(t)
            self.exchange_time += _time.perf_counter() - t0

    # -- substances ----------------------------------------------------------------------
    def grid_starts(self, sub):
        """Per axis, (dims[a] + 1,) voxel ranges of ``sub``'s grid: the blocks
        with index i along axis a own the voxels ``[starts[a][i],
        starts[a][i+1])`` along it, those whose centres lie in the block."""
        starts = []
        for a in range(3):
            owner = np.searchsorted(self.bounds[a][1:-1], sub.voxel_centres(a), side="right")
            starts.append(np.searchsorted(owner, np.arange(int(self.dims[a]) + 1)).astype(np.int64))
        return starts

    def voxel_block(self, starts, rank):
        """[(lo, hi)] per axis: the voxels ``rank`` owns under ``starts``."""
        block = self.block_of(rank)
        return [(int(starts[a][block[a]]), int(starts[a][block[a] + 1])) for a in range(3)]

    def block(self, sub):
        """This rank's voxels of ``sub`` for one advance."""
        return BlockGrid(self, sub, self.grid_starts(sub))

    def _held(self, sub, r):
        """The voxels rank r reads during a step, as three index arrays
        (increasing from the block's lower side, wrapped in a periodic
        grid): its block and aura, plus the stencil of the gradient at the
        outermost (three voxels either side); whole axes where the ranks are
        not cut."""
        block = self.block_of(r)
        box = []
        for axis in range(3):
            n, h, lower = sub.shape[axis], sub.spacing, float(sub.lower[axis])
            if self.dims[axis] == 1:
                box.append(np.arange(n))
                continue
            a = int(np.floor((self.bounds[axis][block[axis]] - self.width - lower) / h - 0.5)) - 3
            b = int(np.floor((self.bounds[axis][block[axis] + 1] + self.width - lower) / h - 0.5)) + 5
            if not sub.periodic:
                box.append(np.arange(max(a, 0), min(b, n)))
            else:
                box.append(np.arange(n) if b - a >= n else np.arange(a, b) % n)
        return box

    def _swap_boxes(self, wants, starts, source, into=None):
        """Voxels between ranks: ``wants[s]`` the boxes rank s needs (lists of
        three index arrays; the same lists on every rank), each part sent by
        the rank that owns it under ``starts``; ``source(box)`` this rank's
        values there.  Returns [(k, box, values)] received: the part
        ``box`` of this rank's k-th wanted box.  ``into(box)``, when given,
        may return a C-contiguous view of where that part goes: it is then
        received there and not returned.  Both sides know every part from
        ``wants`` and ``starts``, so the values go as plain buffers, not
        pickled."""
        size, rank = self.size, self.rank
        mine = self.voxel_block(starts, rank)
        sent = []
        for s, boxes in enumerate(wants):
            if s == rank:
                continue
            for k, box in enumerate(boxes):
                part = _within(box, mine)
                if all(p.size for p in part):
                    values = np.ascontiguousarray(source(part), dtype=np.float64)
                    sent.append((self.comm.Isend(values, dest=s, tag=self.SWAP_TAG + k), values))
                    self.bytes += values.nbytes
        got = []
        for o in range(size):
            if o == rank:
                continue
            theirs = self.voxel_block(starts, o)
            for k, box in enumerate(wants[rank]):
                part = _within(box, theirs)
                if not all(p.size for p in part):
                    continue
                shape = tuple(p.size for p in part)
                at = None if into is None else into(part)
                if at is not None and at.shape == shape and at.flags.c_contiguous:
                    self.comm.Recv(at, source=o, tag=self.SWAP_TAG + k)
                    continue
                values = np.empty(shape)
                self.comm.Recv(values, source=o, tag=self.SWAP_TAG + k)
                got.append((k, part, values))
        for req, _ in sent:
            req.Wait()
        return got

    def _fill(self, sub):
        """Before a step: the voxels each rank reads (:meth:`_held`) made
        current from their owners at the last advance."""
        if sub._fresh is None:
            return
        c = sub._c

        def view(box):  # a slab of whole (y, z) planes, or a box of contiguous runs: received in place
            index = _selector(box)
            return c[index] if isinstance(index, tuple) and all(isinstance(i, slice) for i in index) else None

        wants = [[self._held(sub, s)] for s in range(self.size)]
        for _, box, values in self._swap_boxes(wants, sub._fresh, lambda box: c[_selector(box)], view):
            c[_selector(box)] = values

    def whole(self, root=None):
        """Every substance's whole grid current on every rank (its owners'
        blocks gathered): inside ``gathered()`` and when ``run()`` returns.
        With ``root``, on that rank only (the others keep their blocks)."""
        from mpi4py import MPI

        for sub in self.sim.substances.values():
            if sub._fresh is None:
                continue
            blocks = [self.voxel_block(sub._fresh, r) for r in range(self.size)]
            shapes = [tuple(hi - lo for lo, hi in b) for b in blocks]
            sizes = np.array([int(np.prod(s)) for s in shapes], np.int64)
            if root is None:
                self.bytes += int(sizes[self.rank]) * 8 * (self.size - 1)
            elif self.rank != root:
                self.bytes += int(sizes[self.rank]) * 8
            if self.dims[1] == self.dims[2] == 1:  # whole x-planes: gathered in place
                plane = sub.shape[1] * sub.shape[2]
                flat = sub._c.reshape(sub._c.size)
                spec = [flat, sizes, sub._fresh[0][:-1] * plane, MPI.DOUBLE]
                if root is None:
                    self.comm.Allgatherv(MPI.IN_PLACE, spec)
                elif self.rank == root:
                    self.comm.Gatherv(MPI.IN_PLACE, spec, root=root)
                else:
                    lo = int(sub._fresh[0][self.rank]) * plane
                    self.comm.Gatherv(flat[lo:lo + int(sizes[self.rank])], None, root=root)
            else:
                for r, (b, shape) in enumerate(zip(blocks, shapes)):  # a block at a time: no grid-sized buffer
                    if not sizes[r] or (root is not None and r == root):
                        continue
                    index = _slices(b)
                    if root is None:
                        buf = np.ascontiguousarray(sub._c[index]) if r == self.rank else np.empty(shape)
                        self.comm.Bcast(buf, root=r)
                    elif self.rank == r:
                        self.comm.Send(np.ascontiguousarray(sub._c[index]), dest=root, tag=BlockGrid.TAG + 40)
                        continue
                    elif self.rank == root:
                        buf = np.empty(shape)
                        self.comm.Recv(buf, source=r, tag=BlockGrid.TAG + 40)
                    else:
                        continue
                    if r != self.rank:
                        sub._c[index] = buf
            if root is None:
                sub._fresh = None  # else the ranks' blocks stay as they were: the next step fills as usual


class BlockGrid:
    """This rank's voxels ``[lo, hi)`` (per axis) of one substance for one
    advance (:meth:`Substance._substeps` with ``part``): the voxels whose
    centres lie in its block, which hold every voxel its own and aura
    agents' sources reach, so their queued sums are complete here.  Each
    voxel is computed with the same kernels on the same values as in one
    process:

    * sources, decay and the Dirichlet layers are per voxel;
    * the explicit solver steps a buffer of the own voxels with one ghost
      layer on each face shared with another rank, received from its owner
      before each sub-step (the kernel takes the block's global offsets, so
      each voxel takes the same branch as in the whole grid);
    * the implicit solver's lines along an axis the ranks are cut along
      cross the blocks: their Thomas recurrences pass from rank to rank
      (:meth:`solve`); the other lines lie within the block.

    The grid's array stays whole-sized on every rank; after the advance only
    the own voxels are current (``Substance._fresh``).  Before the next step
    each rank receives the voxels its agents read
    (:meth:`Decomposition._fill`), and ``gathered()`` or the end of
    ``run()`` make the grid whole."""

    TAG = 30000  # point-to-point tags: TAG, TAG + 1 (solve), TAG + 40 (whole), above what scripts usually use
    # the distributed Thomas solve's chunks: about this much of a rank's voxels each, so the chunks between a
    # chunk's forward and backward passes stay in a core's cache; and at most this many (the messages and
    # kernel calls per chunk cost time too): at 62,500 lines of 125 voxels a rank (1 MB L2 a core), every
    # sub-step of two substances took 85-90 ms with 128 chunks of 490 KB, 92-99 with 512 of 122 KB, 100-103
    # with 1,024 and 93-98 with 32 (best of 7-9 each, alternated; session 22)
    CHUNK_BYTES = 256 * 1024
    MAX_CHUNKS = 128

    def __init__(self, dd, sub, starts):
        self.dd = dd
        self.sub = sub
        self.first = starts  # what Substance._fresh keeps
        self.shape = tuple(int(v) for v in sub.shape)
        self.range = dd.voxel_block(starts, dd.rank)
        self.lo = np.array([lo for lo, _ in self.range], np.int64)
        self.m = np.array([hi - lo for lo, hi in self.range], np.int64)
        self.empty = bool(np.any(self.m == 0))
        # the axes whose lines cross blocks of several ranks (the same for every rank)
        self.split = [sum(int(starts[a][i + 1] > starts[a][i]) for i in range(int(dd.dims[a]))) > 1
                      for a in range(3)]
        # the explicit buffer's ghost layers: one on each side shared with another rank
        self.ghost = np.array([[int(not self.empty and self.split[a] and (sub.periodic or lo > 0)),
                                int(not self.empty and self.split[a] and (sub.periodic or hi < self.shape[a]))]
                               for a, (lo, hi) in enumerate(self.range)], np.int64)
        self.explicit = sub.solver == "explicit" and sub.diffusion > 0
        # the sub-steps' array: the own voxels (implicit), or a buffer of them with the ghost layers (explicit)
        self.offset = self.ghost[:, 0] if self.explicit else np.zeros(3, np.int64)
        self.dims = tuple(int(v) for v in (self.m + self.ghost.sum(axis=1) if self.explicit else self.m))
        # whole (y, z) planes: the per-voxel terms act on the own voxels (a contiguous view, indexed like
        # the grid from the first own plane on); else on the whole array the sub-steps work on
        self.planes = self.m[1] == self.shape[1] and self.m[2] == self.shape[2]
        self.at = np.zeros(3, np.int64) if self.planes else self.offset  # own voxels in that array
        self._wants = None  # per rank, the voxels of its ghost layers (_ghost_boxes), once per advance
        self._sides = None  # this rank's ghost layers as (axis, side), in the order of its wants
        self._faces = None  # the explicit kernel's Dirichlet values at the buffer's voxels

    def _own_index(self):
        return tuple(slice(int(o), int(o + m)) for o, m in zip(self.offset, self.m))

    def _global(self):
        return _slices(self.range)

    def span(self):
        """(lo, hi): the flat indices of the grid's voxels in this rank's own
        x planes (all its own voxels, and those only where it holds whole
        planes): the voxels whose sources this rank sums."""
        ny, nz = self.shape[1], self.shape[2]
        if self.empty:
            return 0, 0
        return int(self.lo[0]) * ny * nz, (int(self.lo[0]) + int(self.m[0])) * ny * nz

    def sources(self, queued, span=None):
        """The queued sums (``Substance._source_sums``: per touched voxel) of
        this rank's own voxels, with their indices in the array the
        per-voxel terms act on (:meth:`own`); None if it owns none of them.
        ``span``: the sums were taken over :meth:`span` only."""
        if queued is None or self.empty:
            return None
        voxels, sums, used = queued
        nx, ny, nz = self.shape
        if self.planes and span is not None:  # summed over the own voxels only: the grid's from the first own plane on
            return (voxels - span[0], sums, used) if voxels.size else None
        if self.planes:
            lo = int(self.lo[0]) * ny * nz
            inside = (voxels >= lo) & (voxels < lo + int(np.prod(self.m)))
            local = voxels[inside] - lo
        else:
            i, rest = np.divmod(voxels, ny * nz)
            j, k = np.divmod(rest, nz)
            (x0, x1), (y0, y1), (z0, z1) = self.range
            inside = (i >= x0) & (i < x1) & (j >= y0) & (j < y1) & (k >= z0) & (k < z1)
            ox, oy, oz = self.at
            _, by, bz = self.dims
            local = ((i[inside] - x0 + ox) * by + (j[inside] - y0 + oy)) * bz + (k[inside] - z0 + oz)
        if not local.size:
            return None
        return local, [s if s is self.sub._NONE else s[inside] for s in sums], used

    def work(self, c):
        """(current, spare) arrays of the sub-steps: the own voxels of ``c``
        (implicit; a view when they are whole planes), or a buffer of them
        with the ghost layers and its spare (explicit)."""
        if not self.explicit:
            return np.ascontiguousarray(c[self._global()]), None
        buf = np.empty(self.dims)
        buf[self._own_index()] = c[self._global()]
        return buf, np.empty_like(buf)

    def own(self, cur):
        """The array the per-voxel terms act on: the own voxels of ``cur``
        where they are whole planes, else ``cur`` itself (the explicit
        buffer's ghost layers are refreshed before they are read)."""
        if self.planes and self.explicit:
            return cur[int(self.offset[0]):int(self.offset[0] + self.m[0])]
        return cur

    def store(self, c, cur):
        own = cur[self._own_index()]
        if not np.may_share_memory(own, c):
            c[self._global()] = own

    def set_layers(self, arr, layers, dval):
        """``kernels.cpu.diffusion.set_layers`` on the own voxels of ``arr``
        (what :meth:`own` gives)."""
        for f in layers:
            axis, side = divmod(f, 2)
            layer = 0 if side == 0 else self.shape[axis] - 1
            lo, hi = self.range[axis]
            if self.empty or not lo <= layer < hi:
                continue
            index = [slice(int(o), int(o + m)) for o, m in zip(self.at, self.m)]
            index[axis] = int(self.at[axis]) + layer - lo
            b, c = (v for v in range(3) if v != axis)
            arr[tuple(index)] = dval[axis][side][slice(*self.range[b]), slice(*self.range[c])]

    def _ghost_boxes(self, rank):
        """(sides, boxes): rank's ghost layers as (axis, side) and their
        voxels (three global index arrays each), as ``ghost`` has them."""
        block = self.dd.voxel_block(self.first, rank)
        sides, boxes = [], []
        if any(hi == lo for lo, hi in block):
            return sides, boxes
        for a in range(3):
            lo, hi = block[a]
            n = self.shape[a]
            for side, g in ((0, lo - 1), (1, hi)):
                if self.split[a] and (self.sub.periodic or 0 <= g < n):
                    box = [np.arange(*block[b]) for b in range(3)]
                    box[a] = np.array([g % n], np.int64)
                    sides.append((a, side))
                    boxes.append(box)
        return sides, boxes

    def _ghosts(self, buf):
        """The buffer's ghost layers from their owners (a collective call)."""
        if self._wants is None:  # the same on every rank, and for every sub-step of this advance
            boxes = [self._ghost_boxes(r) for r in range(self.dd.size)]
            self._wants = [b for _, b in boxes]
            self._sides = boxes[self.dd.rank][0]
        got = self.dd._swap_boxes(self._wants, self.first, lambda box: buf[self._buffer_index(box)])
        for k, box, values in got:
            axis, side = self._sides[k]
            index = list(self._buffer_index(box, skip=axis))
            at = 0 if side == 0 else self.dims[axis] - 1
            index[axis] = slice(at, at + 1)
            buf[tuple(index)] = values

    def _buffer_index(self, box, skip=None):
        """The buffer's index of own voxels ``box`` (contiguous runs)."""
        index = []
        for a, ix in enumerate(box):
            if a == skip:
                index.append(None)
                continue
            start = int(ix[0]) - int(self.lo[a]) + int(self.offset[a])
            index.append(slice(start, start + ix.size))
        return tuple(index)

    def ftcs_step(self, buf, out, D, dt, bounds):
        """One explicit sub-step of the buffer into ``out``: ghosts first."""
        from .kernels.cpu import diffusion as K

        self._ghosts(buf)
        if self.empty:
            return
        btype, bflux, dval = bounds
        btype, bflux = btype.copy(), bflux.copy()
        for a in range(3):
            for side in range(2):
                if self.ghost[a, side]:  # an inner face: its values come from the ghost layer
                    btype[2 * a + side], bflux[2 * a + side] = 0, 0.0
        start = self.lo - self.ghost[:, 0]
        at = [np.arange(int(s), int(s) + d) % n for s, d, n in zip(start, self.dims, self.shape)]
        if self._faces is None or self._faces[0] is not dval:
            faces = [np.ascontiguousarray(dval[a][:, at[b]][:, :, at[c]])
                     for a, (b, c) in enumerate(((1, 2), (0, 2), (0, 1)))]
            self._faces = (dval, faces)
        fx, fy, fz = self._faces[1]
        nx, ny, nz = self.shape
        K.ftcs_step(buf, out, D, self.sub.spacing, dt, btype, bflux, fx, fy, fz,
                    int(start[0]), nx, int(start[1]), ny, int(start[2]), nz)

    def _face_terms(self, axis, add):
        """A face's boundary terms (the whole face, reshaped as ``_lod``
        builds them) at this block's lines along ``axis``, flattened in the
        order of the block's other two axes."""
        b, c = (v for v in range(3) if v != axis)
        face = add.reshape(self.shape[b], self.shape[c])
        return np.ascontiguousarray(face[slice(*self.range[b]), slice(*self.range[c])]).reshape(-1)

    def solve(self, axis, own, r, cp, inv, zz, vr, zden, periodic, add_lo, add_hi):
        """The implicit sweep (``lod_sweep``) along ``axis`` of the own voxels
        ``own``.  Where the ranks are not cut along it the lines lie within
        the block and are solved here.  Else the Thomas recurrences pass
        from rank to rank along the lines, the forward one up the ranks and
        the backward one down, one layer of values per face; the lines go in
        chunks, so a rank works on the next chunk while its neighbour takes
        the last one (a pipeline).  A periodic grid's correction then needs
        each line's first and last values (two broadcasts along the line of
        ranks).  ``add_lo``/``add_hi`` are the faces' boundary terms."""
        from .kernels.cpu import diffusion as K

        mx, my, mz = (int(v) for v in self.m)
        lo, hi = self._face_terms(axis, add_lo), self._face_terms(axis, add_hi)
        if not self.split[axis]:
            if self.empty:
                return
            views = (own.reshape(1, mx, my * mz), own, own.reshape(mx * my, mz, 1))
            shapes = ((1, my * mz), (mx, mz), (mx * my, 1))
            K.lod_sweep(views[axis], r, cp, inv, zz, vr, zden, periodic, lo.reshape(shapes[axis]),
                        hi.reshape(shapes[axis]))
            return
        if any(self.m[b] == 0 for b in range(3) if b != axis):
            return  # a line of ranks without voxels: none of its ranks holds any
        dd, line, n = self.dd, self.dd._lines[axis], self.shape[axis]
        starts = self.first[axis]
        holders = [i for i in range(int(dd.dims[axis])) if starts[i + 1] > starts[i]]
        me = int(dd.coords[axis])
        # the lines along the middle axis of w (A, m, B): x lines as (1, mx, my mz), y lines in place as
        # (mx, my, mz); z lines after one transpose, as (1, mz, mx my), so their recurrences vectorise
        if axis == 0:
            w = own.reshape(1, mx, my * mz)
        elif axis == 1:
            w = own
        else:
            w = np.ascontiguousarray(np.moveaxis(own, 2, 0)).reshape(1, mz, mx * my)
        A, B = w.shape[0], w.shape[2]
        lo, hi = lo.reshape(A, B), hi.reshape(A, B)
        g0 = int(self.lo[axis])
        pending = []
        if self.m[axis]:
            at = holders.index(me)
            below = holders[at - 1] if at > 0 else None
            above = holders[at + 1] if at + 1 < len(holders) else None
            along = A if A > 1 else B  # the chunks: of planes, or of columns
            # alike on every rank of the line: from the lines' whole length, not this rank's share of it
            share = 8 * A * B * n // len(holders)  # bytes
            nchunk = int(min(self.MAX_CHUNKS, along, max(1, -(-share // self.CHUNK_BYTES))))
            cuts = (along * np.arange(nchunk + 1)) // nchunk
            chunks = [(int(c0), int(c1), 0, B) if A > 1 else (0, 1, int(c0), int(c1))
                      for c0, c1 in zip(cuts[:-1], cuts[1:])]
            # each chunk's backward pass follows its forward one by ``lag`` chunks, while its values are still
            # in cache: at once on the last rank of the line, two chunks later per rank above (the time the
            # chunk takes to go up the line and its solved values to come back), so no rank waits for long
            lag = 2 * (len(holders) - 1 - at)
            edge = np.empty((A, B))
            for k in range(nchunk + lag):
                if k < nchunk:  # forward, up the ranks
                    a0, a1, c0, c1 = chunks[k]
                    if below is not None:
                        line.Recv(edge[a0:a1, c0:c1], source=below, tag=self.TAG)
                    K.thomas_forward_piece(w, a0, a1, c0, c1, g0, n, r, inv, edge, lo, hi)
                    if above is not None:
                        out = np.ascontiguousarray(w[a0:a1, -1, c0:c1])
                        pending.append((line.Isend(out, dest=above, tag=self.TAG), out))
                if k >= lag:  # backward, down the ranks
                    a0, a1, c0, c1 = chunks[k - lag]
                    if above is not None:
                        line.Recv(edge[a0:a1, c0:c1], source=above, tag=self.TAG + 1)
                    K.thomas_backward_piece(w, a0, a1, c0, c1, g0, n, cp, edge)
                    if below is not None:
                        out = np.ascontiguousarray(w[a0:a1, 0, c0:c1])
                        pending.append((line.Isend(out, dest=below, tag=self.TAG + 1), out))
            for req, _ in pending:
                req.Wait()
            dd.bytes += sum(out.nbytes for _, out in pending)
        if periodic and n > 1:
            ends = np.empty((2, A, B))
            if self.m[axis] and g0 == 0:
                ends[0] = w[:, 0]
            if self.m[axis] and g0 + self.m[axis] == n:
                ends[1] = w[:, -1]
            line.Bcast(ends[0], root=holders[0])
            line.Bcast(ends[1], root=holders[-1])
            if self.m[axis]:
                K.periodic_piece(w, g0, n, zz, vr, zden, ends[0], ends[1])
        if axis == 2 and self.m[axis]:
            own[...] = np.moveaxis(w.reshape(mz, mx, my), 0, 2)
