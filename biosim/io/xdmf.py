"""XDMF sidecar: lets ParaView (and VTK's vtkXdmfReader) open a biosim run.

``run.h5`` gets ``run.xmf`` beside it: a temporal collection with one
Polyvertex grid per snapshot whose geometry and attributes are hyperslabs of
the stacked ``/agents/<column>`` datasets, so no data is copied.  A run with
neurites (:mod:`biosim.neurites`) also gets ``run.neurites.h5``, each
element as a segment from its proximal to its distal end, and each snapshot
becomes a spatial collection of the agents' points and the neurites' lines
(with their diameter and uid).  A run with substances gets
``run.substances.h5``, each grid transposed to the order VTK reads image
data, and each snapshot shows every substance as a grid of voxels (cell
data on image data of the substance's spacing and origin).
"""
import os
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np

_TYPES = {"f": "Float", "i": "Int", "u": "UInt", "b": "UChar"}


def _slab(h5name, column, start, count, width, total, dtype):
    kind = _TYPES.get(dtype.kind, "Float")
    if width == 1:
        return (f'<DataItem ItemType="HyperSlab" Dimensions="{count}" Type="HyperSlab">'
                f'<DataItem Dimensions="3 1" Format="XML">{start} 1 {count}</DataItem>'
                f'<DataItem Dimensions="{total}" NumberType="{kind}" Precision="{dtype.itemsize}" '
                f'Format="HDF">{h5name}:/agents/{column}</DataItem></DataItem>')
    return (f'<DataItem ItemType="HyperSlab" Dimensions="{count} {width}" Type="HyperSlab">'
            f'<DataItem Dimensions="3 2" Format="XML">{start} 0 1 1 {count} {width}</DataItem>'
            f'<DataItem Dimensions="{total} {width}" NumberType="{kind}" Precision="{dtype.itemsize}" '
            f'Format="HDF">{h5name}:/agents/{column}</DataItem></DataItem>')


def write_segments(h5path, agents, counts, types):
    """Write ``<h5path without .h5>.neurites.h5`` (atomically): for each
    snapshot, the neurite elements (rows of ``agents["type"]`` in
    ``types``), in uid order, as segments: ``points`` (2 per element:
    proximal = distal - axis, then distal), ``diameter`` per point, ``uid`` per element,
    ``connectivity`` (0 .. 2m - 1 per snapshot) and ``count`` (elements per
    snapshot).  ``agents`` maps column names to the run's stacked datasets.
    Returns (file name, counts)."""
    out = os.path.splitext(h5path)[0] + ".neurites.h5"
    tmp = out + ".tmp"
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    per = []
    with h5py.File(tmp, "w") as f:
        pts = f.create_dataset("points", shape=(0, 3), maxshape=(None, 3), dtype=np.float64, chunks=(4096, 3))
        dia = f.create_dataset("diameter", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(4096,))
        uid = f.create_dataset("uid", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
        con = f.create_dataset("connectivity", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
        for k in range(len(counts)):
            a, b = int(offsets[k]), int(offsets[k + 1])
            rows = np.flatnonzero(np.isin(agents["type"][a:b], types))
            uids = agents["uid"][a:b][rows]
            order = np.argsort(uids, kind="stable")  # the same file whatever the row order
            rows, uids = rows[order], uids[order]
            m = rows.size
            per.append(m)
            if m == 0:
                continue
            distal = agents["distal"][a:b][rows]
            seg = np.empty((2 * m, 3))
            seg[0::2] = distal - agents["axis"][a:b][rows]
            seg[1::2] = distal
            start = pts.shape[0]
            for ds, values in ((pts, seg), (dia, np.repeat(agents["diameter"][a:b][rows], 2)),
                               (con, np.arange(2 * m, dtype=np.int64))):
                ds.resize(start + 2 * m, axis=0)
                ds[start:] = values
            uid.resize(uid.shape[0] + m, axis=0)
            uid[-m:] = uids
        f.create_dataset("count", data=np.asarray(per, dtype=np.int64))
    os.replace(tmp, out)
    return os.path.basename(out), per


def _segments_grid(name, start, m, total, total_elements, element_start):
    """The XDMF grid of one snapshot's ``m`` neurite segments (points
    ``start``.. of the segments file ``name``)."""
    def slab(ds, width, first, count, size, kind="Float", precision=8):
        dims = f"{count} {width}" if width > 1 else f"{count}"
        sel = (f"{first} 0 1 1 {count} {width}", "3 2") if width > 1 else (f"{first} 1 {count}", "3 1")
        full = f"{size} {width}" if width > 1 else f"{size}"
        return (f'<DataItem ItemType="HyperSlab" Dimensions="{dims}" Type="HyperSlab">'
                f'<DataItem Dimensions="{sel[1]}" Format="XML">{sel[0]}</DataItem>'
                f'<DataItem Dimensions="{full}" NumberType="{kind}" Precision="{precision}" '
                f'Format="HDF">{name}:/{ds}</DataItem></DataItem>')

    return (f'<Grid Name="neurites" GridType="Uniform">'
            f'<Topology TopologyType="Polyline" NodesPerElement="2" NumberOfElements="{m}">'
            + slab("connectivity", 1, start, 2 * m, total, "Int") + "</Topology>"
            + '<Geometry GeometryType="XYZ">' + slab("points", 3, start, 2 * m, total) + "</Geometry>"
            + '<Attribute Name="diameter" AttributeType="Scalar" Center="Node">'
            + slab("diameter", 1, start, 2 * m, total) + "</Attribute>"
            + '<Attribute Name="uid" AttributeType="Scalar" Center="Cell">'
            + slab("uid", 1, element_start, m, total_elements, "Int") + "</Attribute></Grid>")


def write_grids(h5path, grids):
    """Write ``<h5path without .h5>.substances.h5`` (atomically): each
    substance grid of the run (``grids`` maps a name to its run dataset,
    (snapshots, nx, ny, nz) with attributes ``spacing`` and ``lower``) in
    the order VTK reads image data, (snapshots, nz, ny, nx) (x fastest): the
    run stores z fastest and XDMF cannot transpose a hyperslab.  One
    snapshot is held in memory at a time.  Returns (file name, {name:
    (shape (nx, ny, nz), lower (3,), spacing (3,))})."""
    out = os.path.splitext(h5path)[0] + ".substances.h5"
    tmp = out + ".tmp"
    info = {}
    with h5py.File(tmp, "w") as f:
        for name, ds in grids.items():
            snaps, nx, ny, nz = ds.shape
            spacing = np.broadcast_to(np.asarray(ds.attrs["spacing"], dtype=np.float64), (3,)).copy()
            lower = np.asarray(ds.attrs["lower"], dtype=np.float64).reshape(3)
            t = f.create_dataset(name, shape=(snaps, nz, ny, nx), dtype=np.float64, chunks=(1, nz, ny, nx))
            for k in range(snaps):
                t[k] = np.ascontiguousarray(ds[k].transpose(2, 1, 0))
            info[name] = ((nx, ny, nz), lower, spacing)
    os.replace(tmp, out)
    return os.path.basename(out), info


def _grid_xml(file, name, k, snaps, shape, lower, spacing):
    """The XDMF grid of substance ``name`` at snapshot ``k``: cell data on
    image data (3DCoRectMesh, dimensions and origin in z, y, x order)."""
    nx, ny, nz = shape
    return (f'<Grid Name={quoteattr(name)} GridType="Uniform">'
            f'<Topology TopologyType="3DCoRectMesh" Dimensions="{nz + 1} {ny + 1} {nx + 1}"/>'
            f'<Geometry GeometryType="ORIGIN_DXDYDZ">'
            f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">'
            f'{" ".join(repr(float(v)) for v in lower[::-1])}</DataItem>'
            f'<DataItem Dimensions="3" NumberType="Float" Precision="8" Format="XML">'
            f'{" ".join(repr(float(v)) for v in spacing[::-1])}</DataItem></Geometry>'
            f'<Attribute Name={quoteattr(name)} AttributeType="Scalar" Center="Cell">'
            f'<DataItem ItemType="HyperSlab" Dimensions="{nz} {ny} {nx}" Type="HyperSlab">'
            f'<DataItem Dimensions="3 4" Format="XML">{k} 0 0 0 1 1 1 1 1 {nz} {ny} {nx}</DataItem>'
            f'<DataItem Dimensions="{snaps} {nz} {ny} {nx}" NumberType="Float" Precision="8" Format="HDF">'
            f'{file}:/{name}</DataItem></DataItem></Attribute></Grid>')


def write_sidecar(h5path, steps, times, counts, columns, segments=None, grids=None):
    """Write ``<h5path without .h5>.xmf`` atomically.  ``columns`` maps a
    column name to (dtype, per-row width, total rows in the dataset);
    ``segments``: (file name, elements per snapshot) of the neurites'
    segments file (:func:`write_segments`), or None; ``grids``: (file name,
    {substance: (shape, lower, spacing)}) of the substances' file
    (:func:`write_grids`), or None.  Each snapshot is one grid, or a
    spatial collection of the agents, the neurites and the substances."""
    base = os.path.splitext(h5path)[0]
    out = base + ".xmf"
    h5name = os.path.basename(h5path)
    lines = ['<?xml version="1.0" ?>', '<Xdmf Version="3.0">', "<Domain>",
             '<Grid Name="agents" GridType="Collection" CollectionType="Temporal">']
    start = 0
    seg_name, seg_counts = segments if segments is not None else (None, [0] * len(counts))
    seg_total = 2 * int(sum(seg_counts))
    seg_start = 0
    grid_file, grid_info = grids if grids is not None else (None, {})
    for k, (step, time, count, m) in enumerate(zip(steps, times, counts, seg_counts)):
        count = int(count)
        parts = []
        if count > 0:
            dtype, width, total = columns["position"]
            part = ['<Grid Name="agents" GridType="Uniform">',
                    f'<Topology TopologyType="Polyvertex" NumberOfElements="{count}"/>',
                    '<Geometry GeometryType="XYZ">' + _slab(h5name, "position", start, count, 3, total, dtype)
                    + "</Geometry>"]
            for name, (dtype, width, total) in sorted(columns.items()):
                if name == "position" or width not in (1, 3):
                    continue
                kind = "Scalar" if width == 1 else "Vector"
                part.append(f'<Attribute Name={quoteattr(name)} AttributeType="{kind}" Center="Node">'
                            + _slab(h5name, name, start, count, width, total, dtype) + "</Attribute>")
            parts.append("\n".join(part) + "</Grid>")
        if m:
            parts.append(_segments_grid(seg_name, seg_start, int(m), seg_total, seg_total // 2, seg_start // 2))
        for name, (shape, lower, spacing) in grid_info.items():
            parts.append(_grid_xml(grid_file, name, k, len(steps), shape, lower, spacing))
        when = f'<Time Value="{float(time)!r}"/>'
        if len(parts) == 1:  # the grid itself, named by its step
            head, rest = parts[0].split(">", 1)
            head = head.replace('Name="agents"', f'Name="step_{int(step)}"', 1) if count > 0 else head
            lines.append(head + ">" + when + rest)
        elif parts:
            lines.append(f'<Grid Name="step_{int(step)}" GridType="Collection" CollectionType="Spatial">' + when)
            lines += parts
            lines.append("</Grid>")
        start += count
        seg_start += 2 * int(m)
    lines += ["</Grid>", "</Domain>", "</Xdmf>", ""]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)
    return out
