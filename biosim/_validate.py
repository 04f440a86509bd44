"""Input validation shared by the public API: errors name the parameter,
the value and what is allowed."""
import numbers

import numpy as np


def positive(name, value, *, allow_zero=False, allow_inf=False):
    """A real number > 0 (or >= 0); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if np.isnan(v) or (np.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def real(name, value):
    """A finite real number; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


def positive_int(name, value, *, allow_zero=False):
    """An integer >= 1 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    v = int(value)
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else ">= 1"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return v


def boolean(name, value):
    """True or False (numpy's bools too); anything else is a TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


PROBABILITIES = ("exact", "linear")


class UnitWarning(UserWarning):
    """A value that looks like a unit mistake (a rate per step or per hour
    where biosim takes per minute, metres where it takes µm): a warning,
    not an error.  Silence it with
    ``warnings.filterwarnings("ignore", category=bs.UnitWarning)``."""


def is_unit(value):
    """Whether ``value`` is a unit as biosim stores one: a short printable
    string ("µm", "mmHg")."""
    return isinstance(value, str) and len(value) <= 40 and value.isprintable()


def unit(what, value):
    """``value`` as the unit of ``what`` (None, or see :func:`is_unit`);
    ValueError otherwise."""
    if value is not None and not is_unit(value):
        raise ValueError(f"unit of {what} must be a short printable string such as 'µm' or 'mmHg', or None; "
                         f"got {value!r}")
    return value


def unit_warning(message, stacklevel=3):
    import warnings

    warnings.warn(f"{message} (bs.UnitWarning: silence with warnings.filterwarnings(\"ignore\", "
                  f"category=bs.UnitWarning))", UnitWarning, stacklevel=stacklevel)


def event_probability(expected, how):
    """The probability of an event within an interval in which ``expected``
    (rate x dt, a number or an array) of them are expected: "exact",
    1 - exp(-expected) (an exponential waiting time); "linear", PhysiCell's
    rate x dt, capped at 1."""
    if how == "linear":
        return np.minimum(expected, 1.0)
    return -np.expm1(-expected)


def choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def vector3(name, value):
    """Three finite reals, as a float64 array."""
    raw = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None, dtype=object)
    if raw.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be three real numbers (x, y, z) in µm, got {value!r}")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be three numbers (x, y, z) in µm, got {value!r}") from None
    if a.shape != (3,):
        raise ValueError(f"{name} must be three numbers (x, y, z) in µm, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return a


def finite_rows(name, points):
    """ValueError naming the first row of ``points`` (n, 3) that holds NaN or
    inf, and how many do."""
    bad = ~np.all(np.isfinite(points), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; row {i} is {points[i].tolist()} "
                         f"({int(bad.sum())} rows with NaN or inf)")


def seed(value, name="seed"):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not 0 <= int(value) < 2**63:
        raise ValueError(f"{name} must be in [0, 2**63), got {value!r}")
    return int(value)


def cast(name, values, dtype):
    """``values`` (numbers or booleans) as ``dtype``, refusing any value the
    cast would change: integers outside the dtype's range (257 into int8
    would become 1), floats into integer or bool columns, integers other
    than 0 and 1 into bool columns, finite floats beyond a float32's
    range.  Integers of either signedness go into unsigned or signed columns
    when they fit.  ``name`` names the column or parameter in the error."""
    arr = np.asarray(values)
    dtype = np.dtype(dtype)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers or booleans, got dtype {arr.dtype}")
    src, dst = arr.dtype.kind, dtype.kind
    if dst in "iu" and src in "iub":
        if arr.size and src != "b":
            info = np.iinfo(dtype)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                bad = lo if lo < info.min else hi
                raise ValueError(f"{name} has dtype {dtype}, which holds {info.min}..{info.max}; "
                                 f"got {bad}")
    elif dst == "b" and src in "iu":
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} has dtype bool, which holds 0 and 1 (False, True); got "
                             f"{arr[(arr != 0) & (arr != 1)].ravel()[0]}")
    elif dst == "f" and src == "f":
        if arr.size and dtype.itemsize < arr.dtype.itemsize:
            big = np.abs(arr[np.isfinite(arr)])
            limit = float(np.finfo(dtype).max)
            if big.size and float(big.max()) > limit:
                raise ValueError(f"{name} has dtype {dtype}, whose largest value is {limit:g}; got "
                                 f"{float(big.max()):g}")
    elif not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        raise TypeError(f"{name} has dtype {dtype}; values of dtype {arr.dtype} do not fit")
    return arr.astype(dtype)
