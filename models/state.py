"""Changes of cell state: differentiation into another population, or a
state column switching value."""
import numbers

import numpy as np

from biosim import _validate as V
from biosim.behaviour import SubstanceBehaviour, live_rows


class StateSwitch(SubstanceBehaviour):
    """Cells switch at ``rate`` per minute (probability 1 - exp(-rate dt) per
    interval): with ``column="type"`` (the default) into population ``to``
    (they then follow that population's behaviours), otherwise the column
    ``column`` takes the value ``to``.  Optionally gated by a substance: only
    where its concentration is below ``below`` and/or above ``above``.

    Parameters
    ----------
    to : str (population name) or number (state value)
    rate : float, 1/min (>= 0)
    column : str, default "type"
    substance : Substance or str, optional
    below, above : float, optional (concentration thresholds; need ``substance``)
    every : int, default 1
    """

    per_agent = True

    def event_rates(self):
        return {"rate": self.rate}

    def __init__(self, to, rate, column="type", substance=None, below=None, above=None, every=1):
        super().__init__(substance, every, required=False)
        self.rate = V.positive("rate", rate, allow_zero=True)
        if not isinstance(column, str):
            raise TypeError(f"column must be a column name, got {column!r}")
        if column == "type" and not isinstance(to, str):
            raise TypeError(f"to must be a population name when column='type', got {to!r}")
        if column != "type" and (isinstance(to, bool) or not isinstance(to, numbers.Real)):
            raise TypeError(f"to must be a number for column {column!r}, got {to!r}")
        if column in ("uid", "position", "diameter"):
            raise ValueError(f"column {column!r} cannot be switched; use 'type' or a state column")
        if (below is not None or above is not None) and substance is None:
            raise ValueError("below/above thresholds need a substance")
        if substance is not None and below is None and above is None:
            raise ValueError("a substance gate needs a threshold: below=... and/or above=...")
        self.to = to
        self.column = column
        self.below = None if below is None else V.real("below", below)
        self.above = None if above is None else V.real("above", above)
        self._value = None

    def attach(self, sim, population):
        if self.column == "type":
            if self.to not in sim.populations:
                raise ValueError(f"StateSwitch: unknown population {self.to!r}; populations are "
                                 f"{', '.join(sim.populations)} (create it with sim.add_agents(name, []))")
            self._value = sim.populations[self.to].code
        else:
            if self.column not in sim.agents:
                raise ValueError(f"StateSwitch: column {self.column!r} does not exist; columns are "
                                 f"{', '.join(sim.agents.columns)}")
            to, dtype = self.to, sim.agents.spec(self.column).dtype
            if dtype.kind in "iub" and isinstance(to, float) and to.is_integer():
                to = int(to)
            self._value = V.cast(f"StateSwitch(to={self.to!r}): column {self.column!r}", to, dtype)[()]
        super().attach(sim, population)

    @property
    def device_ready(self):
        return self.column == "type" or self._value is None or self._value.shape == ()

    def run(self, sim, population, dt):
        if self.rate == 0:
            return
        B = sim.backend
        t = sim.agents
        rows = live_rows(sim, population.code)
        m = len(rows)
        if m == 0:
            return
        if self._sub is not None:  # values < 0.5 pass: 0 inside the thresholds, 1 outside
            gate = B.empty(m, np.float64)
            B.behaviours.substance_gate(self._sub.sample_rows(rows), np.inf if self.below is None else self.below,
                                        -np.inf if self.above is None else self.above, gate)
            threshold = 0.5
        else:
            gate, threshold = B.full(m, 0.0), np.inf
        flag = B.empty(m, np.bool_)
        if B.behaviours.mark_below(rows, t.col("uid", False), gate, threshold, np.array([-np.expm1(-self.rate * dt)]),
                                   sim.seed, sim.step, self.stream, flag):
            chosen = B.take(rows, B.nonzero(flag, m))
            if self.column == "type":
                t.set_type(chosen, self._value)
            elif t.spec(self.column).shape == ():
                B.behaviours.assign(t.col(self.column), chosen, self._value)
            else:
                t[self.column][B.to_host(chosen)] = self._value
