"""3D rendering of biosim runs with PyVista (``biosim.viz``).

Not implemented yet: rendering is the subject of the visualisation issue.
Until then, open runs with ``biosim.io.open_run`` and plot the arrays.
"""
