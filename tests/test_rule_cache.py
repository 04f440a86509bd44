"""Agent rules compile once per machine: a second process loads the kernel
from biosim's cache; a changed rule, a garbled cache, a cache of another
user or an unwritable cache directory never crash and never reuse a stale
kernel."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import biosim as bs
    STEP = {step}

    @bs.agent_rule(writes=("age",), columns={{"age": ("float64", 0.0)}})
    def ageing(a, ctx):
        a.age += STEP * ctx.dt + {extra}

    sim = bs.Simulation(bs.Box.cube(100.0), dt=0.5, mechanics=None)
    pop = sim.add_agents("c", bs.init.uniform(50, sim.box, seed=2), diameter=5.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pop.behaviours += [ageing]
        sim.run(2)
    k = pop.behaviours[0]._kernel
    print(json.dumps({{"age": float(sim.agents["age"].max()), "hits": sum(k._cache_hits.values()),
                       "misses": sum(k._cache_misses.values()), "warnings": [str(w.message) for w in caught]}}))
""")


def run(tmp_path, cache, step=2.0, extra=0.0):
    script = tmp_path / "rule.py"
    script.write_text(SCRIPT.format(step=step, extra=extra))
    env = dict(os.environ, BIOSIM_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rules(cache):
    return sorted((cache / "rules").iterdir())


@pytest.mark.slow
def test_a_second_process_loads_the_rule_and_a_changed_rule_recompiles(tmp_path):
    cache = tmp_path / "cache"
    first = run(tmp_path, cache)
    assert first["age"] == 2 * 2.0 * 0.5 and first["misses"] == 1 and first["hits"] == 0
    assert any(p.suffix == ".nbi" for p in rules(cache))
    second = run(tmp_path, cache)
    assert second == dict(first, hits=1, misses=0)
    # the rule's source changed: a new kernel, never the stale one
    changed = run(tmp_path, cache, extra=1.0)
    assert changed["age"] == 2 * (2.0 * 0.5 + 1.0) and changed["misses"] == 1
    # a module constant the rule reads changed: numba froze the old value into the old kernel
    constant = run(tmp_path, cache, step=3.0)
    assert constant["age"] == 2 * 3.0 * 0.5 and constant["misses"] == 1
    assert run(tmp_path, cache)["hits"] == 1  # the first kernel is still there


@pytest.mark.slow
def test_garbled_foreign_and_unwritable_caches_are_survived(tmp_path):
    cache = tmp_path / "cache"
    run(tmp_path, cache)
    for p in rules(cache):  # truncate and garble every cache file of the rule
        if p.suffix in (".nbi", ".nbc"):
            p.write_bytes(b"\x80\x04garbage")
    garbled = run(tmp_path, cache)
    assert garbled["age"] == 2.0 and any("could not be read" in w for w in garbled["warnings"])
    assert run(tmp_path, cache)["hits"] == 1  # rebuilt
    if hasattr(os, "getuid") and os.getuid() == 0:
        for p in rules(cache):  # planted by another user: removed and rebuilt, never loaded
            os.chown(p, 4242, -1)
        foreign = run(tmp_path, cache)
        assert foreign["age"] == 2.0 and foreign["misses"] == 1
        assert all(p.stat().st_uid == 0 for p in rules(cache))
        os.chown(cache / "rules", 4242, -1)
        other = run(tmp_path, cache)
        assert other["age"] == 2.0 and other["hits"] == 0
        assert any("belongs to another user" in w for w in other["warnings"])
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    nowhere = run(tmp_path, blocked)
    assert nowhere["age"] == 2.0 and nowhere["hits"] == 0
    assert sum("compiled in memory" in w for w in nowhere["warnings"]) == 1


def test_cache_directory_follows_the_platform_and_the_variable(monkeypatch, tmp_path):
    from biosim import _cache

    monkeypatch.delenv("BIOSIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert _cache.cache_dir() == str(tmp_path / "xdg" / "biosim")
    monkeypatch.setenv("BIOSIM_CACHE_DIR", str(tmp_path / "mine"))
    assert _cache.cache_dir() == str(tmp_path / "mine")
    path, why = _cache.private_dir("rules")
    assert path == str(tmp_path / "mine" / "rules") and why is None
    assert (os.stat(path).st_mode & 0o777) == 0o700
    os.chmod(path, 0o777)
    assert _cache.private_dir("rules")[0] is None and "writable by other users" in _cache.private_dir("rules")[1]


def test_numba_caches_in_the_biosim_folder_unless_told_otherwise(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    code = "import numba, biosim, os; print(numba.config.CACHE_DIR); print(os.environ['NUMBA_CACHE_DIR'])"
    for first in ("import numba; ", ""):  # numba imported before biosim, or not
        out = subprocess.run([sys.executable, "-c", first + code], env=dict(env, BIOSIM_CACHE_DIR=str(tmp_path)),
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == [str(tmp_path / "numba")] * 2
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, NUMBA_CACHE_DIR=str(tmp_path / "own")),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "own")] * 2
