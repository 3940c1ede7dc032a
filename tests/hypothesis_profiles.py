"""The hypothesis profiles of the whole suite, registered and loaded once by the root
``conftest.py`` (tests state at most how many examples they need, nothing else).

``ci`` (the default: ``make test``, ``make unit``, CI)
    The same examples on every run (``derandomize``), no example database, and no timing-based
    checks (no ``deadline``, no ``too_slow`` health check): CI runs on a busy two-core machine,
    and a property or fuzz test there is a *regression* test over a fixed sample; it fails only
    when the code changes, never because the machine was slow or the draw was unlucky.
``fuzz`` (``make fuzz``, the nightly-style run)
    Fresh random seeds on every run and ``FUZZ_FACTOR`` times the examples; what it finds is
    kept in ``.hypothesis/`` and replayed first on the next ``make fuzz``, and each failure
    prints the ``@reproduce_failure`` blob to pin it as a regression example.

``SHORTHOP_HYPOTHESIS_PROFILE`` picks the profile; ``SHORTHOP_EXAMPLES`` fixes every test's
example count (quick local runs, or a longer soak).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "SHORTHOP_HYPOTHESIS_PROFILE"
EXAMPLES_ENV = "SHORTHOP_EXAMPLES"
CI, FUZZ = "ci", "fuzz"
CI_EXAMPLES = 100  # hypothesis' own default, for tests that do not say
FUZZ_FACTOR = 10


def register() -> str:
    """Register both profiles and load the one ``SHORTHOP_HYPOTHESIS_PROFILE`` names (``ci``
    when unset); returns its name."""
    settings.register_profile(
        CI,
        max_examples=CI_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # The only wall-clock health check: it fails examples that are merely slow to draw on
        # a loaded machine. The others (filter_too_much, data_too_large, ...) are deterministic
        # under derandomize and point at a generator that needs fixing.
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        FUZZ,
        parent=settings.get_profile(CI),
        max_examples=CI_EXAMPLES * FUZZ_FACTOR,
        derandomize=False,
        database=settings.get_profile("default").database,
        print_blob=True,
    )
    name = os.environ.get(PROFILE_ENV, CI).strip() or CI
    if name not in (CI, FUZZ):
        raise ValueError(f"{PROFILE_ENV} must be {CI} or {FUZZ}, not {name!r}")
    settings.load_profile(name)
    return name


def examples(ci_count: int) -> int:
    """A test's example count: ``ci_count`` under ``ci`` (tests whose examples are costly ask for
    fewer than the default), scaled by the loaded profile under ``fuzz``;
    ``SHORTHOP_EXAMPLES`` overrides both."""
    fixed = os.environ.get(EXAMPLES_ENV)
    if fixed:
        return int(fixed)
    return max(1, ci_count * settings.default.max_examples // CI_EXAMPLES)
