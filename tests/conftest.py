"""Hypothesis profiles for the property tests.

- ``ci`` (the default): 500 examples per property, no per-example deadline
  (an example compiles and dry-runs nft; timing is not what is tested).
- ``long``: 20000 examples, for a soak run before a release:
  ``HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_properties.py``.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=500, deadline=None)
settings.register_profile("long", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
