"""Goodfellow's optimizer pieces: velocity-form SGD, per-batch decay with a floor, momentum ramp."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from ganzoo.callbacks import MomentumSchedule
from ganzoo.optim import ExponentialDecayWithFloor, VelocitySGD


def test_velocity_sgd_follows_the_velocity_form_under_a_changing_lr():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = VelocitySGD([p], lr=0.1, momentum=0.5)
    v, x = 0.0, 1.0
    for lr, grad in ((0.1, 2.0), (0.05, -1.0), (0.02, 3.0)):
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor([grad])
        opt.step()
        v = 0.5 * v - lr * grad
        x = x + v
        assert_close(p.detach(), torch.tensor([x]))


def test_exponential_decay_divides_per_step_and_stops_at_the_floor():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = ExponentialDecayWithFloor(opt, decay_factor=2.0, min_lr=0.02)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.05, 0.025, 0.02, 0.02])


def test_exponential_decay_state_round_trips():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = ExponentialDecayWithFloor(opt, decay_factor=1.000004, min_lr=1e-6)
    for _ in range(1000):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([p], lr=0.1)
    sched2 = ExponentialDecayWithFloor(opt2, decay_factor=1.000004, min_lr=1e-6)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 / 1.000004**1001)


def test_momentum_schedule_is_linear_between_start_and_saturation():
    s = MomentumSchedule(initial=0.5, final=0.7, start_epoch=1, saturate_epoch=250)
    assert s.momentum(0) == pytest.approx(0.5)
    assert s.momentum(1) == pytest.approx(0.5)
    assert s.momentum(125.5) == pytest.approx(0.6)
    assert s.momentum(250) == pytest.approx(0.7)
    assert s.momentum(400) == pytest.approx(0.7)


def test_momentum_ramp_follows_pylearn2_epoch_by_epoch():
    """In 1-based epoch e, momentum 0.5 + 0.2 (e - 1) / 249 (pylearn2's MomentumAdjustor with
    start=1, saturate=250, which also runs once before the first epoch)."""
    from types import SimpleNamespace

    p = torch.nn.Parameter(torch.zeros(1))
    opt = VelocitySGD([p], lr=0.1, momentum=0.0)
    module = SimpleNamespace(players=("discriminator",), log=lambda *a, **k: None)
    schedule = MomentumSchedule(initial=0.5, final=0.7, start_epoch=1, saturate_epoch=250)
    for epoch in (1, 2, 3, 125, 250, 251, 400):
        trainer = SimpleNamespace(current_epoch=epoch - 1, optimizers=[opt])
        schedule.on_train_epoch_start(trainer, module)
        expected = 0.5 + 0.2 * min(epoch - 1, 249) / 249
        assert opt.param_groups[0]["momentum"] == pytest.approx(expected, abs=1e-12)
