"""Space: the simulation box, boundary conditions and the uniform grid used
for neighbour search."""
import numpy as np

from . import _validate as V
from .kernels.cpu import grid as K

BOUNDARIES = ("closed", "periodic", "open")


class Box:
    """An axis-aligned box from ``lower`` to ``upper`` (µm)."""

    def __init__(self, lower, upper):
        lo = V.vector3("lower", lower)
        hi = V.vector3("upper", upper)
        if np.any(hi <= lo):
            raise ValueError(f"upper must exceed lower on every axis, got lower={lo.tolist()}, "
                             f"upper={hi.tolist()}")
        with np.errstate(over="ignore"):
            length = hi - lo
        if not np.all(np.isfinite(length)):
            raise ValueError(f"the box's edge lengths upper - lower must be finite, got {length.tolist()} µm "
                             f"(lower={lo.tolist()}, upper={hi.tolist()})")
        self.lower = lo
        self.upper = hi

    @classmethod
    def cube(cls, edge, lower=0.0):
        """A cube of edge ``edge`` µm whose lower corner is at ``lower`` (a number
        or three numbers, µm)."""
        edge = V.positive("edge", edge)
        lo = np.broadcast_to(np.asarray(lower, dtype=float), (3,)) if np.ndim(lower) == 0 else lower
        lo = V.vector3("lower", lo)
        return cls(lo, lo + edge)

    @property
    def length(self):
        """Edge lengths (µm), shape (3,)."""
        return self.upper - self.lower

    @property
    def volume(self):
        return float(np.prod(self.length))

    def contains(self, points):
        """Mask of points inside the closed box."""
        p = np.asarray(points, dtype=float)
        return np.all((p >= self.lower) & (p <= self.upper), axis=-1)

    def to_dict(self):
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist()}

    def __repr__(self):
        return f"Box(lower={self.lower.tolist()}, upper={self.upper.tolist()})"

    def __eq__(self, other):
        return (isinstance(other, Box) and np.array_equal(self.lower, other.lower)
                and np.array_equal(self.upper, other.upper))


class UniformGrid:
    """Cells of edge at least ``cutoff`` tiling the box; agents are sorted into
    the canonical order, by cell and then by uid, so the members of cell c
    are rows ``order[cell_start[c]:cell_start[c+1]]`` in uid order.  The
    order is a function of the positions and uids alone, never of the rows'
    current order: every sum over neighbours that follows it is the same
    bit for bit however the table's rows happen to be arranged.  Every
    ``reorder_every`` builds the agent table itself is permuted into that
    order (then ``order`` is the identity) for memory locality; how often is
    a performance choice that changes no result.

    The grid is valid for the positions it was built from; the simulation
    marks it stale whenever anything moves agents or changes their number or
    diameters, and rebuilds it before the next phase that needs neighbours.
    """

    def __init__(self, box, periodic, max_cells_per_agent=2.0, reorder_every=8, backend=None):
        self.box = box
        self.backend = backend  # None: the CPU; a GPU backend keeps the grid's arrays on the device
        self._host_args = None
        self.periodic = np.array([bool(p) for p in periodic], dtype=np.bool_)
        self.max_cells_per_agent = max_cells_per_agent
        self.reorder_every = reorder_every
        self.reorder = True  # False: never permute the table's rows (an MPI rank keeps its own rows first)
        self.cutoff = None
        self.dims = np.ones(3, dtype=np.int64)
        self.inv_h = np.zeros(3)
        self.cell_start = np.zeros(2, dtype=np.int32)
        self._cell = np.empty(0, dtype=np.int32)
        self._order = np.empty(0, dtype=np.int32)
        self._block_counts = np.empty((1, 1), dtype=np.int64)
        self._columns = np.empty((0, 0))
        self.builds = 0

    # x-cells per cutoff: finer x-cells sharpen the x-windows of the neighbour
    # loops but cost more cell visits.  None: 2 where cells one cutoff wide
    # would hold at least SPLIT_OCCUPANCY agents on average (or the
    # mechanics law's own ``split_occupancy``), else 1 (the circles
    # benchmark, 8 agents per cell: 12% faster split; the mechanics
    # benchmark, 3.4 per cell: 16% slower split).
    X_SPLIT = None
    SPLIT_OCCUPANCY = 6.0

    def _layout(self, cutoff, n, split_occupancy=None):
        length = self.box.length
        limit = max(4096.0, self.max_cells_per_agent * n)
        # in floats first: a tiny cutoff must not overflow the integer cell counts
        with np.errstate(over="ignore"):
            dims = np.minimum(np.maximum(1.0, np.floor(length / cutoff)), limit)
        while float(np.prod(dims)) > limit:  # bound memory: bigger cells stay correct
            # (halving, not just enough: the sphere loops pay per cell, so sparse cells cost them more than the
            # extra candidates; clustering at 2x10^5 spends 14 ms/step in the forces on 46^3 cells, 22 on 73^3)
            dims = np.maximum(1.0, np.floor(dims / 2))
        dims = dims.astype(np.int64)
        split = self.X_SPLIT
        if split is None:
            occupancy = self.SPLIT_OCCUPANCY if split_occupancy is None else split_occupancy
            split = 2 if n >= occupancy * float(np.prod(dims.astype(float))) else 1
        while split > 1 and float(np.prod(dims.astype(float))) * split > limit:
            split //= 2
        dims[0] *= split
        return dims

    def build(self, table, cutoff, split_occupancy=None, layout_n=None):
        """Bin the table's agents into cells of edge >= ``cutoff`` µm and sort
        them into the canonical order (x-cells halved from
        ``split_occupancy`` agents per cutoff-wide cell, default
        SPLIT_OCCUPANCY); every ``reorder_every`` builds the rows themselves
        are permuted into it.  ``layout_n``: the agent count the cell
        layout is chosen for (an MPI rank passes the whole simulation's, so
        its cells are one process's; default: the table's).  Returns 0
        exactly when the rows were in canonical order already."""
        from numba import get_num_threads

        n = len(table)
        dims = self._layout(cutoff, n if layout_n is None else layout_n, split_occupancy)
        self.cutoff = float(cutoff)
        self.dims = dims
        self.inv_h = dims / self.box.length
        ncells = int(np.prod(dims))
        self._host_args = None
        if self.backend is not None and self.backend.on_device:
            return self._build_device(table, n, ncells)
        if self._cell.size < table.capacity:
            self._cell = np.empty(table.capacity, dtype=np.int32 if ncells < 2**31 else np.int64)
            self._order = np.empty(table.capacity, dtype=np.int32 if table.capacity < 2**31 else np.int64)
        # bounded by 2 (cells + agents) entries whatever the thread count
        nchunks = K.sort_chunks(n, ncells, get_num_threads())
        nblocks = (ncells + K.CELL_BLOCK - 1) // K.CELL_BLOCK
        if self._block_counts.shape != (nchunks, nblocks):
            self._block_counts = np.empty((nchunks, nblocks), dtype=np.int64)
        # offsets into the sorted rows: int32 like the order while the table has fewer than 2^31 rows
        if self.cell_start.size != ncells + 1 or self.cell_start.dtype != self._order.dtype:
            self.cell_start = np.empty(ncells + 1, dtype=self._order.dtype)
        pos = table.position
        K.assign_cells(pos, n, self.box.lower, self.inv_h, dims, self.periodic, self._cell)
        # the sort keys and the (chunks, cells) histograms live in the table's scratch, which is free
        # during a build (the force buffers are taken after it): 12-20 bytes per agent not held between steps
        keys = 8 * n
        scratch = table.scratch((keys + nchunks * ncells * self._order.itemsize,), np.uint8)
        skey = scratch[:keys].view(np.int64)
        counts = scratch[keys:].view(self._order.dtype).reshape(nchunks, ncells)
        moved = K.canonical_sort(self._cell, table.uid, table.next_uid, n, counts, self._block_counts,
                                 self.cell_start, self._order, skey)
        if moved and self.reorder and self.builds % self.reorder_every == 0:
            # reorder the rows themselves (memory locality); in between, the
            # sort order serves as an indirection into the table
            table.permute(self._order[:n])
            self._order[:n] = np.arange(n, dtype=self._order.dtype)
        self.builds += 1
        return moved

    def _build_device(self, table, n, ncells):
        """build() on a GPU backend: the same canonical order, computed on the
        device from the table's device columns."""
        B = self.backend
        K = B.grid
        cap = max(table.capacity, 1)
        if self._cell.size < cap or not hasattr(self._cell, "copy_to_host"):
            self._cell = B.empty(cap, np.int64)
            self._skey = B.empty(cap, np.int64)
            self._order = B.empty(cap, np.int64)
        if self.cell_start.size != ncells + 1 or not hasattr(self.cell_start, "copy_to_host"):
            self.cell_start = B.empty(ncells + 1, np.int64)
            self._counts = B.empty(ncells + 1, np.int64)
        pos = table.col("position", write=False)
        K.assign_cells(pos, n, self.box.lower, self.inv_h, self.dims, self.periodic, self._cell)
        moved = K.canonical_sort(self._cell, table.col("uid", write=False), table.next_uid, n, self._counts, None,
                                 self.cell_start, self._order, self._skey)
        if moved and self.reorder and self.builds % self.reorder_every == 0:
            table.permute(self._order[:n])
            K.arange(self._order, n)
            K.assign_cells(table.col("position", write=False), n, self.box.lower, self.inv_h, self.dims,
                           self.periodic, self._cell)
        self.builds += 1
        return moved

    def kernel_args(self):
        """(cell_start, order, lower, inv_h, dims, length, periodic, cutoff) for
        search kernels: the members of cell c are rows
        ``order[cell_start[c]:cell_start[c+1]]``.  Host arrays (on a GPU
        backend, copies made once per build: what host code searches with)."""
        if self.backend is not None and self.backend.on_device:
            if self._host_args is None:
                self._host_args = (self.cell_start.copy_to_host(), self._order.copy_to_host())
            cell_start, order = self._host_args
        else:
            cell_start, order = self.cell_start, self._order
        return (cell_start, order, self.box.lower, self.inv_h, self.dims, self.box.length,
                self.periodic, self.cutoff)

    def device_args(self):
        """kernel_args() where the backend's kernels use them (device arrays on
        a GPU), with the rows' cells first: (cell, cell_start, order, lower,
        inv_h, dims, length, periodic, cutoff)."""
        return (self._cell, self.cell_start, self._order, self.box.lower, self.inv_h, self.dims, self.box.length,
                self.periodic, self.cutoff)

    def sorted_columns(self, table, rows=3):
        """The table's positions (and with ``rows`` 4 diameters, with 5 types as
        floats) in the grid's sort order, as the rows of a float64 array kept
        between calls (at least n + K.SORTED_PAD wide; the K.SORTED_PAD
        entries after n zeroed, the rest unused): what the neighbour loops
        gather from, reading contiguous memory."""
        n = len(table)
        if self.backend is not None and self.backend.on_device:
            cols = self._columns
            if not hasattr(cols, "copy_to_host") or cols.shape[0] < rows or cols.shape[1] < max(n, 1):
                cols = self._columns = self.backend.empty((5, max(table.capacity, 1)), np.float64)
            cols = cols[:rows]
            self.backend.grid.sorted_columns(table.col("position", write=False), table.col("diameter", write=False),
                                             table.col("type", write=False), self._order, n, cols)
            return cols
        width = n + K.SORTED_PAD
        if self._columns.shape[0] < rows or self._columns.shape[1] < width:
            self._columns = np.empty((max(rows, self._columns.shape[0]), max(width, table.capacity + K.SORTED_PAD)))
        # whole rows, so C-contiguous: a slice of the width would compile the kernels a second time
        cols = self._columns[:rows]
        K.sorted_columns(table.position, table.diameter, table.type, self._order, n, cols)
        return cols

    def column_buffer(self, table, rows):
        """``rows`` C-contiguous rows of the buffer :meth:`sorted_columns`
        fills (at least len(table) + K.SORTED_PAD wide), for a search kernel
        that writes its own sorted columns there; the next sorted_columns
        call overwrites them.  CPU backend."""
        width = len(table) + K.SORTED_PAD
        if self._columns.shape[0] < rows or self._columns.shape[1] < width:
            self._columns = np.empty((max(rows, self._columns.shape[0]), max(width, table.capacity + K.SORTED_PAD)))
        return self._columns[:rows]

    def neighbour_lists(self, position, radius):
        """CSR lists (offsets, rows) of the rows closer than ``radius`` µm to each
        row, for a table sorted by this grid.  ``radius`` must not exceed the
        cutoff the grid was built with."""
        if radius > self.cutoff * (1 + 1e-12):
            raise ValueError(f"radius {radius} exceeds the grid cutoff {self.cutoff}")
        n = len(position)
        offsets = np.zeros(n + 1, dtype=np.int64)
        nbr = np.empty(0, dtype=np.int64)
        args = self.kernel_args()
        K.neighbour_lists(position, n, *args, float(radius), offsets, False, nbr)
        np.cumsum(offsets, out=offsets)
        nbr = np.empty(offsets[-1], dtype=np.int64)
        K.neighbour_lists(position, n, *args, float(radius), offsets, True, nbr)
        return offsets, nbr


def neighbour_pairs(position, radius, box, boundary="closed"):
    """All pairs (i, j), i < j, of points closer than ``radius`` µm, as an
    (m, 2) int64 array sorted lexicographically; periodic boxes use minimum-image
    distances.  A convenience over the engine's grid search (the input is not
    modified)."""
    from .agents import AgentTable

    V.choice("boundary", boundary, BOUNDARIES)
    radius = V.positive("radius", radius)
    pos = np.ascontiguousarray(position, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"position must have shape (n, 3), got {pos.shape}")
    V.finite_rows("position", pos)
    if boundary == "periodic" and np.any(2 * radius > box.length):
        raise ValueError(f"radius {radius} must be at most half the periodic box edge {box.length.min()}")
    t = AgentTable()
    t.append({"position": pos}, 0)
    g = UniformGrid(box, [boundary == "periodic"] * 3)
    g.build(t, radius)
    offsets, nbr = g.neighbour_lists(t.position, radius)
    rows = np.repeat(np.arange(len(t)), np.diff(offsets))
    idx = t.uid  # uid = original index
    a, b = idx[rows], idx[nbr]
    keep = a < b
    pairs = np.stack([a[keep], b[keep]], axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs.reshape(0, 2)
