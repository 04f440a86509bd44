"""SWC export of neuron morphologies (neurite trees, :mod:`biosim.neurites`).

One line per sample, ``id type x y z radius parent``: each neuron's soma
first (type 1, parent -1, its centre and radius), then its elements depth
first, the left daughter's subtree before the right one's, each element as
its distal point with its radius (half its diameter) and its mother's id
(the soma's for a first element).  First elements follow in uid order (the
order they were extended).  BioDynaMo's NeuronSoma::PrintSWC writes the
same order; it writes each element's midpoint where biosim writes the distal
end, which is what SWC's samples are (the segment from the parent's sample
to this one is the element).  In a periodic box a tree that crosses a face
is written whole, as it grew from its soma, not cut by the wrap.
"""
import os

import numpy as np


def _number(v):
    """Shortest text that reads back as the same float, integers without
    a decimal point (3, -1, 0.5)."""
    s = repr(float(v))
    if s.endswith(".0"):
        s = s[:-2]
    return "0" if s == "-0" else s


def _columns(run_or_sim, snapshot):
    """(columns dict, neurite type codes, box edge lengths in µm when the
    box is periodic, else None) of a Simulation or a Run snapshot."""
    if hasattr(run_or_sim, "agents") and hasattr(run_or_sim, "populations") and hasattr(run_or_sim, "step"):
        sim = run_or_sim
        if snapshot != -1:
            raise ValueError(f"snapshot applies to runs read from a file; a live simulation has only its current "
                             f"state (snapshot=-1), got snapshot={snapshot!r}")
        with sim.gathered():
            t = sim.agents
            need = ("uid", "type", "position", "diameter", "distal", "axis", "attachment", "mother", "daughter_left",
                    "daughter_right", "swc_type")
            if sim.neurites is None:
                return None, [], None
            period = np.asarray(sim.box.length, float) if sim.boundary == "periodic" else None
            return {c: np.array(t[c]) for c in need}, list(sim.neurites.types), period
    if hasattr(run_or_sim, "agents") and hasattr(run_or_sim, "metadata"):
        run = run_or_sim
        meta = run.metadata.get("neurites") or {}
        types = meta.get("types", [])
        if not isinstance(types, list) or not all(isinstance(c, int) and 0 <= c < 2**15 for c in types):
            raise ValueError(f"run {run.path!r}: its metadata lists neurite types {types!r}, not type codes")
        if not types:
            return None, [], None
        need = ("uid", "type", "position", "diameter", "distal", "axis", "attachment", "mother", "daughter_left",
                "daughter_right", "swc_type")
        missing = [c for c in need if c not in run.columns]
        if missing:
            raise ValueError(f"run {run.path!r} has neurites but lacks the column {missing[0]!r}")
        period = None
        if run.metadata.get("boundary") == "periodic":
            box = run.metadata.get("box") or {}
            try:
                period = np.asarray(box["upper"], float) - np.asarray(box["lower"], float)
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"run {run.path!r}: a periodic box without its lower and upper corners in the "
                                 f"metadata ({box!r})") from None
            if period.shape != (3,) or not (np.isfinite(period).all() and (period > 0).all()):
                raise ValueError(f"run {run.path!r}: its metadata gives a periodic box of edge lengths {period!r}")
        return run.agents(snapshot, columns=need), types, period
    raise TypeError(f"write_swc takes a Simulation or a Run (bs.io.open_run), got {run_or_sim!r}")


def _unwrapped(distal, expected, period):
    """An element's distal point (µm) as drawn: in a periodic box (edge
    lengths ``period``) the image of the stored point nearest ``expected``
    (its mother's end plus its axis), so a tree across a face stays whole;
    else the stored point."""
    if period is None:
        return distal
    return distal + period * np.rint((expected - distal) / period)


def swc_lines(cols, types, soma=None, period=None):
    """The SWC lines of every neuron in ``cols`` (or of the soma with uid
    ``soma``)."""
    uid = np.asarray(cols["uid"], dtype=np.int64)
    cyl = np.isin(cols["type"], types)
    row = {int(u): i for i, u in enumerate(uid)}
    mother = cols["mother"]
    first = np.flatnonzero(cyl & ~np.isin(mother, uid[cyl]))
    somata = np.unique(mother[first])
    if soma is not None:
        if int(soma) not in set(somata.tolist()):
            raise ValueError(f"soma: agent uid {soma!r} has no neurites here (somata with neurites: "
                             f"{somata[:10].tolist()})")
        somata = np.array([int(soma)])
    first = first[np.argsort(uid[first], kind="stable")]
    lines = []
    next_id = 1
    for s in somata.tolist():
        i = row.get(s)
        if i is None:
            raise ValueError(f"neurite elements name soma uid {s}, which is not an agent of this state")
        p = cols["position"][i]
        lines.append(f"{next_id} 1 {_number(p[0])} {_number(p[1])} {_number(p[2])} "
                     f"{_number(0.5 * cols['diameter'][i])} -1")
        soma_id = next_id
        next_id += 1
        r = 0.5 * cols["diameter"][i]
        stack = [(int(j), soma_id, p + r * cols["attachment"][j]) for j in reversed(first[mother[first] == s].tolist())]
        while stack:
            j, parent, start = stack.pop()
            d = _unwrapped(cols["distal"][j], start + cols["axis"][j], period)
            lines.append(f"{next_id} {int(cols['swc_type'][j])} {_number(d[0])} {_number(d[1])} {_number(d[2])} "
                         f"{_number(0.5 * cols['diameter'][j])} {parent}")
            me = next_id
            next_id += 1
            for col in ("daughter_right", "daughter_left"):  # popped left first
                u = int(cols[col][j])
                if u >= 0:
                    k = row.get(u)
                    if k is None:
                        raise ValueError(f"neurite element uid {int(uid[j])} names daughter uid {u}, which is not "
                                         f"an agent of this state")
                    stack.append((k, me, d))
    return lines


def write_swc(run_or_sim, path, snapshot=-1, soma=None):
    """Write the neurons of a simulation (its current state) or of a run's
    snapshot (Python-style index) to ``path`` in SWC: every neuron as a tree
    rooted at its soma, in uid order of the somata (or only the neuron of
    ``soma``, a uid).  Returns the number of lines written.  A simulation
    running under MPI is gathered (a collective call: every rank makes
    it) and rank 0 writes the file."""
    cols, types, period = _columns(run_or_sim, snapshot)
    if cols is None:
        raise ValueError("write_swc: this simulation has no neurites (sim.add_neurites makes them)")
    lines = swc_lines(cols, types, soma, period)
    path = os.fspath(path)
    if getattr(run_or_sim, "rank", 0) != 0:
        return len(lines)
    with open(path, "w") as f:
        f.write("# biosim neuron morphology: id type x y z radius parent (µm)\n")
        f.write("".join(line + "\n" for line in lines))
    return len(lines)
