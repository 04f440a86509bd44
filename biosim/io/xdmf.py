"""XDMF sidecar: lets ParaView (and VTK's vtkXdmfReader) open a biosim run.

``run.h5`` gets ``run.xmf`` beside it: a temporal collection with one
Polyvertex grid per snapshot whose geometry and attributes are hyperslabs of
the stacked ``/agents/<column>`` datasets, so no data is copied.
"""
import os
from xml.sax.saxutils import quoteattr

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


def write_sidecar(h5path, steps, times, counts, columns):
    """Write ``<h5path without .h5>.xmf`` atomically.  ``columns`` maps a
    column name to (dtype, per-row width, total rows in the dataset)."""
    base = os.path.splitext(h5path)[0]
    out = base + ".xmf"
    h5name = os.path.basename(h5path)
    lines = ['<?xml version="1.0" ?>', '<Xdmf Version="3.0">', "<Domain>",
             '<Grid Name="agents" GridType="Collection" CollectionType="Temporal">']
    start = 0
    for step, time, count in zip(steps, times, counts):
        count = int(count)
        if count > 0:
            lines.append(f'<Grid Name="step_{int(step)}" GridType="Uniform"><Time Value="{float(time)!r}"/>')
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
        start += count
    lines += ["</Grid>", "</Domain>", "</Xdmf>", ""]
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, out)
    return out
