"""pytest configuration of the benchmark tests: the test suite's (parallel twins from 2**15 elements)."""
import tests.conftest  # noqa: F401  (sets fastnn._config.PARALLEL_THRESHOLD for the test shapes)
