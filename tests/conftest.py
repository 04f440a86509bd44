from hypothesis import settings

settings.register_profile("biosim", deadline=None, max_examples=40)
settings.load_profile("biosim")
