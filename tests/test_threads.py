"""Which threads run the kernels' parallel twins (fastnn.set_parallel_threads)."""
import threading

import pytest

import fastnn
import fastnn._config as config
from fastnn._cpu.dropout import dropout_scale


def _picked_in_a_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(dropout_scale.pick(1 << 24)))
    t.start()
    t.join()
    return out[0]


def test_only_the_main_thread_goes_parallel_by_default():
    assert dropout_scale.pick(1 << 24) is dropout_scale.parallel
    assert _picked_in_a_thread() is dropout_scale.serial


def test_any_thread_may_go_parallel_when_asked():
    previous = fastnn.set_parallel_threads("any")
    try:
        assert _picked_in_a_thread() is dropout_scale.parallel
        assert config.parallel_allowed()
    finally:
        assert fastnn.set_parallel_threads(previous) == "any"
    assert _picked_in_a_thread() is dropout_scale.serial


def test_a_bad_policy_is_refused():
    with pytest.raises(ValueError, match="'main' or 'any'"):
        fastnn.set_parallel_threads("all")
