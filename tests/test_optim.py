"""Optimizers against torch.optim step by step, hyperparameter checks, schedules."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fastnn import optim
from fastnn.nn import Parameter

STEPS = 6


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    w = Parameter(rng.standard_normal((4, 3)).astype(dtype), decay=True)
    b = Parameter(rng.standard_normal(4).astype(dtype), decay=False)
    grads = [(rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal(4).astype(dtype))
             for _ in range(STEPS)]
    return w, b, grads


def _run_both(torch, make_ours, make_theirs, dtype, wd_on_bias=False):
    """Apply the same gradients to a fastnn and a torch optimizer; return both params."""
    w, b, grads = _params(dtype)
    tw = torch.tensor(w.data.copy(), requires_grad=True)
    tb = torch.tensor(b.data.copy(), requires_grad=True)
    ours = make_ours([w, b])
    # fastnn never decays a decay=False parameter (the bias); torch is told the same.
    theirs = make_theirs([{"params": [tw]}, {"params": [tb], "weight_decay": 0.0}])
    for gw, gb in grads:
        w.grad, b.grad = gw.copy(), gb.copy()
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        ours.step()
        theirs.step()
        rtol = 1e-12 if dtype == np.float64 else 2e-6
        np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=rtol, atol=rtol)
    assert w.data.dtype == dtype and b.data.dtype == dtype


SGD_CASES = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
             dict(weight_decay=0.1), dict(momentum=0.5, nesterov=True, weight_decay=0.05)]


@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda kw: ",".join(kw) or "plain")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_matches_torch(torch, kw, dtype):
    _run_both(torch, lambda p: optim.SGD(p, lr=0.1, **kw),
              lambda g: torch.optim.SGD(g, lr=0.1, **kw), dtype)


ADAM_CASES = [dict(), dict(weight_decay=0.1), dict(betas=(0.5, 0.9), eps=1e-3),
              dict(lr=0.05, betas=(0.0, 0.99))]


@pytest.mark.parametrize("kw", ADAM_CASES, ids=lambda kw: ",".join(kw) or "default")
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_matches_torch(torch, cls, kw, dtype):
    kw = {"lr": 0.01, **kw}
    _run_both(torch, lambda p: getattr(optim, cls)(p, **kw),
              lambda g: getattr(torch.optim, cls)(g, **kw), dtype)


def test_adamw_default_decay_is_torch_default(torch):
    _run_both(torch, lambda p: optim.AdamW(p, lr=0.1), lambda g: torch.optim.AdamW(g, lr=0.1),
              np.float64)
    assert optim.AdamW([Parameter(np.zeros(2))]).weight_decay == 0.01


@pytest.mark.parametrize("make", [
    lambda p: optim.SGD(p, lr=0.1, weight_decay=0.5),
    lambda p: optim.Adam(p, lr=0.1, weight_decay=0.5),
    lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.5)])
def test_decay_skips_parameters_without_decay_flag(make):
    """A decay=False parameter with zero gradient never moves; a decayed one shrinks."""
    w = Parameter(np.ones(3), decay=True)
    b = Parameter(np.ones(3), decay=False)
    opt = make([w, b])
    for _ in range(3):
        w.grad, b.grad = np.zeros(3), np.zeros(3)
        opt.step()
    np.testing.assert_array_equal(b.data, np.ones(3))
    assert np.all(w.data < 1)


def test_parameters_without_grad_are_skipped():
    w = Parameter(np.ones(3))
    v = Parameter(np.ones(3))
    opt = optim.Adam([w, v], lr=0.1)
    w.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(v.data, np.ones(3))
    assert np.all(w.data < 1)
    opt.zero_grad()
    assert w.grad is None and v.grad is None


def test_update_is_in_place():
    w = Parameter(np.ones(3))
    ref = w.data
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = np.ones(3)
    opt.step()
    assert w.data is ref


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.SGD(p, lr=-0.1), "lr"),
    (lambda p: optim.SGD(p, lr=float("nan")), "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda p: optim.Adam(p, lr=-1e-3), "lr"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "betas"),
    (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "betas"),
    (lambda p: optim.Adam(p, betas=0.9), "betas"),
    (lambda p: optim.Adam(p, eps=-1e-8), "eps"),
    (lambda p: optim.AdamW(p, weight_decay=-0.01), "weight_decay"),
    (lambda p: optim.Adam([], lr=0.1), "empty"),
    (lambda p: optim.Adam(p + p, lr=0.1), "twice"),
])
def test_invalid_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make([Parameter(np.zeros(2))])


def test_non_parameters_are_refused():
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.zeros(3)], lr=0.1)


# -- schedules --------------------------------------------------------------
def test_warmup_cosine_values():
    s = optim.warmup_cosine(1.0, warmup_steps=10, total_steps=110, init_lr=0.1, end_lr=0.01)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert s(9) == pytest.approx(0.1 + 0.9 * 9 / 10)
    assert s(10) == 1.0  # the warmup boundary hits the peak exactly
    assert s(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s(110) == pytest.approx(0.01)
    for step in (111, 200, 10 ** 9):  # clamped past the end: never climbs back
        assert s(step) == 0.01


def test_warmup_cosine_matches_torch_cosine_annealing(torch):
    """After warmup the decay is torch's CosineAnnealingLR (eta_min = end_lr)."""
    peak, w, T, end = 0.5, 5, 25, 0.05
    s = optim.warmup_cosine(peak, w, T, end_lr=end)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=peak)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T - w, eta_min=end)
    for step in range(w, T + 1):
        assert s(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        cos.step()


def test_warmup_cosine_edge_cases():
    no_warmup = optim.warmup_cosine(2.0, warmup_steps=0, total_steps=4)
    assert no_warmup(0) == 2.0 and no_warmup(4) == 0.0
    all_warmup = optim.warmup_cosine(2.0, warmup_steps=4, total_steps=4, end_lr=0.5)
    assert all_warmup(2) == pytest.approx(1.0) and all_warmup(4) == 0.5
    with pytest.raises(ValueError, match="total_steps"):
        optim.warmup_cosine(1.0, warmup_steps=10, total_steps=5)
    with pytest.raises(ValueError, match="step"):
        no_warmup(-1)
    with pytest.raises(ValueError, match="peak_lr"):
        optim.warmup_cosine(-1.0, 1, 2)
    with pytest.raises(TypeError, match="step"):
        no_warmup(1.5)


@given(peak=st.floats(1e-5, 10), init=st.floats(0, 1), end=st.floats(0, 1),
       w=st.integers(0, 50), extra=st.integers(1, 200))
def test_warmup_cosine_properties(peak, init, end, w, extra):
    T = w + extra
    s = optim.warmup_cosine(peak, w, T, init_lr=init, end_lr=end)
    values = [s(i) for i in range(T + 20)]
    lo, hi = min(peak, init, end), max(peak, init, end)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values)
    assert values[w] == pytest.approx(peak)
    decay = values[w:]
    if peak >= end:  # after the warmup it only goes down, then stays
        assert all(a >= b - 1e-12 for a, b in itertools.pairwise(decay))
    assert all(v == end for v in values[T:])


def test_step_decay_and_constant():
    s = optim.step_decay(1.0, step_size=3, gamma=0.5)
    assert [s(i) for i in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    c = optim.constant(0.3)
    assert c(0) == c(10 ** 6) == 0.3
    with pytest.raises(ValueError, match="step_size"):
        optim.step_decay(1.0, step_size=0)
    with pytest.raises(ValueError, match="gamma"):
        optim.step_decay(1.0, step_size=2, gamma=1.5)
    with pytest.raises(ValueError, match="lr"):
        optim.constant(-1)
    assert math.isclose(optim.step_decay(0.1, 10)(25), 0.001)


class _FakeDeviceArray:
    """Stands for a GPU array (only its __cuda_array_interface__ is looked at)."""
    __cuda_array_interface__ = {}  # noqa: RUF012
    shape = (2,)


def test_parameters_on_mixed_devices_are_refused():
    with pytest.raises(ValueError, match=r"different devices.*model\.to"):
        optim.Adam([Parameter(np.zeros(2)), Parameter(_FakeDeviceArray())])


def test_grad_of_the_wrong_shape_or_device_is_refused():
    w = Parameter(np.ones(3))
    opt = optim.SGD([w], lr=0.1)
    w.grad = np.ones(4)
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    w.grad = _FakeDeviceArray()
    w.grad.shape = (3,)
    with pytest.raises(RuntimeError, match="grad"):
        opt.step()
    np.testing.assert_array_equal(w.data, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2d_strided_parameters_update_in_place(dtype):
    base = np.ones((4, 6), dtype)
    w = Parameter(base[:, ::2])              # a non-contiguous view, updated through
    opt = optim.Adam([w], lr=0.1)
    w.grad = np.ones((4, 3), dtype)
    opt.step()
    np.testing.assert_allclose(base[:, ::2], 0.9, rtol=1e-6)
    np.testing.assert_array_equal(base[:, 1::2], 1)


# -- state_dict / load_state_dict --------------------------------------------
MAKERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05),
    "sgd_momentum": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2, betas=(0.8, 0.99), eps=1e-7),
    "adamw": lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


def _stepped(kind, dtype=np.float64, steps=3):
    w, b, grads = _params(dtype)
    opt = MAKERS[kind]([w, b])
    for gw, gb in grads[:steps]:
        w.grad, b.grad = gw, gb
        opt.step()
    return opt, grads


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_round_trip_continues_exactly(kind):
    """Save after 3 steps, load into a fresh optimizer (other hyperparameters): the next 3
    steps equal the uninterrupted optimizer's, bit for bit."""
    opt, grads = _stepped(kind)
    saved = opt.state_dict()
    w2, b2, _ = _params(np.float64, seed=5)
    w2.data[...], b2.data[...] = opt.params[0].data, opt.params[1].data
    fresh = type(opt)([w2, b2], lr=1.0)
    assert fresh.load_state_dict(saved) is fresh
    for o in (opt, fresh):
        for gw, gb in grads[3:]:
            o.params[0].grad, o.params[1].grad = gw, gb
            o.step()
    for p, q in zip(opt.params, fresh.params):
        np.testing.assert_array_equal(p.data, q.data)
    assert fresh.lr == opt.lr and vars(fresh).keys() == vars(opt).keys()
    for s, t in zip(opt.state, fresh.state):
        assert s.keys() == t.keys()
        for k in s:
            np.testing.assert_array_equal(s[k], t[k])


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_is_torch_shaped_and_shares_no_memory(kind):
    opt, _ = _stepped(kind)
    sd = opt.state_dict()
    assert sd.keys() == {"state", "param_groups"} and len(sd["param_groups"]) == 1
    group = sd["param_groups"][0]
    assert group["params"] == [0, 1] and group["lr"] == opt.lr
    assert sorted(sd["state"]) == ([] if kind == "sgd" else [0, 1])
    arrays = [v for s in sd["state"].values() for v in s.values() if hasattr(v, "shape")]
    for a in arrays:
        assert not any(np.shares_memory(a, v) for s in opt.state for v in s.values()
                       if hasattr(v, "shape"))
    # loading copies too: changing the dict afterwards changes nothing
    fresh = type(opt)(opt.params, lr=1.0).load_state_dict(sd)
    for s in sd["state"].values():
        for v in s.values():
            if hasattr(v, "shape"):
                v[...] = 123.0
    assert all(not np.any(v == 123.0) for s in fresh.state for v in s.values()
               if hasattr(v, "shape"))


def test_state_dict_has_torch_keys(torch):
    w, b, _ = _params(np.float64)
    ours = optim.Adam([w, b], lr=1e-2).state_dict()
    theirs = torch.optim.Adam([torch.zeros(3, requires_grad=True)], lr=1e-2).state_dict()
    assert ours.keys() == theirs.keys()
    assert set(ours["param_groups"][0]) <= set(theirs["param_groups"][0])


@pytest.mark.parametrize("edit,error,match", [
    (lambda sd: sd["state"][0].__setitem__("exp_avg", np.zeros((3, 4))), ValueError,
     r"state\[0\]\['exp_avg'\] has shape \(3, 4\), params\[0\] has \(4, 3\)"),
    (lambda sd: sd["state"][1].__setitem__("exp_avg_sq", np.array(["a"] * 4)), ValueError,
     r"state\[1\]\['exp_avg_sq'\] must hold real numbers"),
    (lambda sd: sd["state"][1].pop("step"), KeyError, r"state\[1\] .*missing \['step'\]"),
    (lambda sd: sd["state"][0].__setitem__("momentum_buffer", np.zeros((4, 3))), KeyError,
     r"unexpected \['momentum_buffer'\]"),
    (lambda sd: sd["state"].__setitem__(2, {}), KeyError, "entries 2 for an optimizer of 2"),
    (lambda sd: sd["param_groups"][0].__setitem__("params", [0]), ValueError,
     "over 1 parameters, this one has 2"),
    (lambda sd: sd["param_groups"][0].__setitem__("lr", -1.0), ValueError, "lr"),
    (lambda sd: sd["param_groups"][0].pop("eps"), KeyError, r"missing \['eps'\]"),
    (lambda sd: sd["param_groups"].append({}), ValueError, "list of one dict"),
    (lambda sd: sd["state"][0].__setitem__("step", 1.5), TypeError, "step"),
])
def test_load_state_dict_names_the_mismatch_and_changes_nothing(edit, error, match):
    opt, _ = _stepped("adam", np.float32)
    sd = opt.state_dict()
    edit(sd)
    target, _ = _stepped("adam", np.float32, steps=1)
    before = target.state_dict()
    with pytest.raises(error, match=match):
        target.load_state_dict(sd)
    after = target.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i, s in before["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(after["state"][i][k], v)


def test_load_state_dict_converts_dtypes_and_refuses_what_would_overflow():
    opt64, _ = _stepped("adam", np.float64)
    target, _ = _stepped("adam", np.float32)
    target.load_state_dict(opt64.state_dict())
    assert target.state[0]["exp_avg"].dtype == np.float32
    np.testing.assert_array_equal(target.state[0]["exp_avg"],
                                  opt64.state[0]["exp_avg"].astype(np.float32))
    sd = opt64.state_dict()
    sd["state"][0]["exp_avg_sq"][0, 0] = 1e300
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg_sq'\] holds values beyond"):
        target.load_state_dict(sd)
