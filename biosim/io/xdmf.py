"""XDMF sidecar: lets ParaView (and VTK's vtkXdmfReader) open a biosim run.

``run.h5`` gets ``run.xmf`` beside it: a temporal collection with one
Polyvertex grid per snapshot whose geometry and attributes are hyperslabs of
the stacked ``/agents/<column>`` datasets, so no data is copied.  A run with
neurites (:mod:`biosim.neurites`) also gets ``run.neurites.h5``, each
element as a segment from its proximal to its distal end, and each snapshot
becomes a spatial collection of the agents' points and the neurites' lines
(with their diameter and uid).
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
    ``types``), in uid order, as segments: ``points`` (2 per element: proximal = distal -
    axis, then distal), ``diameter`` per point, ``uid`` per element,
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
            rows = rows[np.argsort(agents["uid"][a:b][rows], kind="stable")]  # the same file whatever the row order
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
            uid[-m:] = agents["uid"][a:b][rows]
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


def write_sidecar(h5path, steps, times, counts, columns, segments=None):
    """Write ``<h5path without .h5>.xmf`` atomically.  ``columns`` maps a
    column name to (dtype, per-row width, total rows in the dataset);
    ``segments``: (file name, elements per snapshot) of the neurites'
    segments file (:func:`write_segments`), or None."""
    base = os.path.splitext(h5path)[0]
    out = base + ".xmf"
    h5name = os.path.basename(h5path)
    lines = ['<?xml version="1.0" ?>', '<Xdmf Version="3.0">', "<Domain>",
             '<Grid Name="agents" GridType="Collection" CollectionType="Temporal">']
    start = 0
    seg_name, seg_counts = segments if segments is not None else (None, [0] * len(counts))
    seg_total = 2 * int(sum(seg_counts))
    seg_start = 0
    for step, time, count, m in zip(steps, times, counts, seg_counts):
        count = int(count)
        if count > 0 and m:
            lines.append(f'<Grid Name="step_{int(step)}" GridType="Collection" CollectionType="Spatial">'
                         f'<Time Value="{float(time)!r}"/>')
        if count > 0:
            lines.append(f'<Grid Name="{"agents" if m else f"step_{int(step)}"}" GridType="Uniform">'
                         + ("" if m else f'<Time Value="{float(time)!r}"/>'))
            lines.append(f'<Topology TopologyType="Polyvertex" NumberOfElements="{count}"/>')
            dtype, width, total = columns["position"]
            lines.append('<Geometry GeometryType="XYZ">'
                         + _slab(h5name, "position", start, count, 3, total, dtype) + "</Geometry>")
            for name, (dtype, width, total) in sorted(columns.items()):
                if name == "position" or width not in (1, 3):
                    continue
                kind = "Scalar" if width == 1 else "Vector"
                lines.append(f'<Attribute Name={quoteattr(name)} AttributeType="{kind}" Center="Node">'
                             + _slab(h5name, name, start, count, width, total, dtype) + "</Attribute>")
            lines.append("</Grid>")
            if m:
                lines.append(_segments_grid(seg_name, seg_start, int(m), seg_total, seg_total // 2,
                                            seg_start // 2) + "</Grid>")
        start += count
        seg_start += 2 * int(m)
    lines += ["</Grid>", "</Domain>", "</Xdmf>", ""]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)
    return out
