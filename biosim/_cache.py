"""Where biosim keeps compiled code: one per-user cache directory.

``cache_dir()`` is ``$BIOSIM_CACHE_DIR`` when set, else the platform's
per-user cache directory: ``$XDG_CACHE_HOME/biosim`` or ``~/.cache/biosim``
on Linux, ``~/Library/Caches/biosim`` on macOS, ``%LOCALAPPDATA%\\biosim``
on Windows.  It holds

* ``numba/``: numba's cache of every compiled kernel (biosim sets
  ``NUMBA_CACHE_DIR`` to it when you have not set that variable), so the
  demo, the tests, the benchmarks and your scripts share one cache;
* ``rules/``: the compiled agent rules (:mod:`biosim.rules`).

Deleting the directory is always safe: the next run compiles again.
A directory biosim cannot create or write, or one that another user owns or
can write, is not used (numba then caches where it would by itself, and
agent rules compile in memory, with one warning).
"""
import os
import stat
import sys
import warnings

_warned = set()


def cache_dir():
    """The per-user cache directory (see the module doc); not created here."""
    env = os.environ.get("BIOSIM_CACHE_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "biosim")


def private_dir(name):
    """``cache_dir()/name``, created (mode 0700) if needed, or None with the
    reason when it cannot be used: not creatable or writable, owned by
    another user, or writable by others (files there are executed and
    unpickled, so nobody else may be able to plant them)."""
    path = os.path.join(cache_dir(), name)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError as e:
        return None, f"cannot create {path!r} ({e.strerror or e})"
    if not os.access(path, os.W_OK | os.X_OK):
        return None, f"{path!r} is not writable"
    if hasattr(os, "getuid"):
        if st.st_uid != os.getuid():
            return None, f"{path!r} belongs to another user (uid {st.st_uid})"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return None, f"{path!r} is writable by other users (mode {stat.filemode(st.st_mode)})"
    return path, None


def warn_once(key, message):
    """One warning per key and process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def configure_numba():
    """Point numba's cache at ``cache_dir()/numba`` unless ``NUMBA_CACHE_DIR``
    is set already (then that is used); returns the directory numba uses,
    or None where it caches next to the sources."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    path, _ = private_dir("numba")
    if path is None:
        return None
    os.environ["NUMBA_CACHE_DIR"] = path
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:  # numba imported before biosim: it read the variable already
        numba_config.CACHE_DIR = path
    return path
