# `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.biosim-installed
# compiled kernels and agent rules: biosim's per-user cache (~/.cache/biosim; NUMBA_CACHE_DIR overrides)

.PHONY: demo test docs bench clean clean-cache gl-libs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	@$(PY) -c "import sys; from biosim.viz import rendering_available as r; sys.exit(0 if r()[0] else 1)" \
		|| $(MAKE) --no-print-directory gl-libs
	$(VENV)/bin/biosim demo --out out

# Offscreen OpenGL for VTK on a bare Debian/Ubuntu (as root with apt-get); elsewhere say what is missing.
gl-libs:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing EGL/Mesa for offscreen rendering"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends libegl1 libegl-mesa0 libgl1-mesa-dri; \
	else \
		echo "offscreen rendering unavailable: install libegl1 libegl-mesa0 libgl1-mesa-dri (or libosmesa6)"; \
	fi

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

# the documentation site (Sphinx, pydata theme, the examples' gallery rendered now): docs/_build/html
docs: $(STAMP)
	@$(PY) -c "import sys; from biosim.viz import rendering_available as r; sys.exit(0 if r()[0] else 1)" \
		|| $(MAKE) --no-print-directory gl-libs
	$(PY) -m sphinx -b html -W --keep-going docs docs/_build/html
	@echo "open docs/_build/html/index.html"

bench: $(STAMP)
	$(PY) benchmarks/bench_mechanics.py
	$(PY) benchmarks/bench_diffusion.py
	$(PY) benchmarks/bench_sir.py
	$(PY) benchmarks/bench_circles.py
	$(PY) benchmarks/bench_suite.py --scenario proliferation,clustering,physicell_template

clean:
	rm -rf $(VENV) out *.egg-info

# biosim's per-user cache of compiled kernels and rules (shared by every checkout and script)
clean-cache:
	$(PYTHON) -c "import importlib.util as u, shutil; s = u.spec_from_file_location('c', 'biosim/_cache.py'); \
		m = u.module_from_spec(s); s.loader.exec_module(m); print('removing', m.cache_dir()); \
		shutil.rmtree(m.cache_dir(), ignore_errors=True)"
