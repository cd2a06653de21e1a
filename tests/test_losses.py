"""Closed-form values of the GAN loss terms."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from ganzoo import losses


def test_bce_terms_match_their_closed_forms():
    logits = torch.tensor([0.0, 2.0, -3.0])
    p = torch.sigmoid(logits)
    assert_close(losses.bce_real(logits), -torch.log(p).mean())
    assert_close(losses.bce_fake(logits), -torch.log1p(-p).mean())


def test_d_loss_standard_at_zero_logits_is_2_log_2():
    zeros = torch.zeros(5)
    assert_close(losses.d_loss_standard(zeros, zeros), torch.tensor(2 * math.log(2.0)))


def test_d_loss_standard_is_the_negated_value_function():
    real, fake = torch.tensor([1.5, -0.5]), torch.tensor([0.3, -2.0])
    value = torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean()
    assert_close(losses.d_loss_standard(real, fake), -value)


def test_generator_losses():
    fake = torch.tensor([-4.0, 0.0, 2.5])
    d = torch.sigmoid(fake)
    assert_close(losses.g_loss_minimax(fake), torch.log(1 - d).mean())
    assert_close(losses.g_loss_nonsaturating(fake), -torch.log(d).mean())


def test_minimax_saturates_where_nonsaturating_does_not():
    # D rejects the sample confidently: the minimax gradient vanishes, the non-saturating one does not.
    fake = torch.tensor([-10.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(losses.g_loss_minimax(fake), fake)
    (g_ns,) = torch.autograd.grad(losses.g_loss_nonsaturating(fake), fake)
    assert abs(g_mm.item()) < 1e-4
    assert_close(g_ns, torch.tensor([-torch.sigmoid(torch.tensor(10.0)).item()]))


def test_losses_are_finite_for_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for value in (
        losses.d_loss_standard(big, big),
        losses.g_loss_minimax(big),
        losses.g_loss_nonsaturating(big),
    ):
        assert torch.isfinite(value)


def test_r1_penalty_of_a_quadratic_critic_is_its_closed_form():
    """D(x) = a . x^2 has grad 2 a x, so E ||grad||^2 = mean over samples of sum_j 4 a_j^2 x_j^2."""
    a = torch.tensor([0.5, -2.0, 1.5])
    x = torch.randn(7, 3, requires_grad=True)
    logits = (x.pow(2) * a).sum(1)
    want = (4 * a.pow(2) * x.detach().pow(2)).sum(1).mean()
    assert_close(losses.r1_penalty(logits, x), want)
