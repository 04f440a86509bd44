import os

os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".numba_cache"))

from hypothesis import settings  # noqa: E402

settings.register_profile("biosim", deadline=None, max_examples=40)
settings.load_profile("biosim")
