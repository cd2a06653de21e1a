"""Optimizers and schedules of the recipes that PyTorch does not ship as such."""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class VelocitySGD(Optimizer):
    """SGD with momentum in pylearn2's velocity form (Goodfellow et al. 2014's released code).

    ``v <- momentum * v - lr * g;  p <- p + v``. PyTorch's ``SGD`` keeps ``b <- momentum * b + g``
    and steps ``p <- p - lr * b`` instead; the two agree only while the learning rate is constant,
    and the goodfellow2014 recipe decays it after every minibatch.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0):
        if lr < 0.0 or not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"VelocitySGD needs lr >= 0 and 0 <= momentum < 1, got {lr=}, {momentum=}"
            )
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(group["momentum"]).add_(p.grad, alpha=-group["lr"])
                p.add_(v)
        return loss


class ExponentialDecayWithFloor(torch.optim.lr_scheduler.LambdaLR):
    """``lr_t = max(lr_0 / decay_factor**t, min_lr)``: pylearn2's ``ExponentialDecay``.

    Stepped once per training batch by the family module. Its state (the step count) is saved
    in checkpoints, so a resumed run continues the decay where it stopped.
    """

    def __init__(self, optimizer: Optimizer, decay_factor: float, min_lr: float = 0.0):
        if decay_factor < 1.0:
            raise ValueError(
                f"decay_factor divides the learning rate and must be >= 1, got {decay_factor}"
            )
        self.decay_factor = decay_factor
        self.min_lr = min_lr
        base = [g["lr"] for g in optimizer.param_groups]
        super().__init__(
            optimizer,
            [_DecayFactor(decay_factor, min_lr / lr if lr > 0 else 0.0) for lr in base],
        )


class _DecayFactor:
    """Picklable multiplicative factor ``max(decay**-t, floor)`` for ``LambdaLR``."""

    def __init__(self, decay_factor: float, floor: float):
        self.decay_factor = decay_factor
        self.floor = floor

    def __call__(self, step: int) -> float:
        return max(self.decay_factor ** (-step), self.floor)


class PowerAnnealing(torch.optim.lr_scheduler.LambdaLR):
    """``lr_t = lr_0 - (s / num_stages)**power * (lr_0 - final_lr)``, ``s = t // stage_length``,
    never below ``final_lr``: deeppy's ``GammaAnnealer`` as the official VAE/GAN code uses it
    (one value per 250-batch "epoch"). Stepped once per training batch by the family module.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        final_lr: float,
        num_stages: int,
        stage_length: int = 1,
        power: float = 1.0,
    ):
        if num_stages < 1 or stage_length < 1 or power <= 0:
            raise ValueError(
                "PowerAnnealing needs num_stages >= 1, stage_length >= 1 and power > 0, got "
                f"{num_stages=}, {stage_length=}, {power=}"
            )
        base = [g["lr"] for g in optimizer.param_groups]
        factors = [_PowerFactor(lr, final_lr, num_stages, stage_length, power) for lr in base]
        super().__init__(optimizer, factors)


class _PowerFactor:
    """Picklable factor ``lr_t / lr_0`` of :class:`PowerAnnealing`."""

    def __init__(
        self, lr0: float, final_lr: float, num_stages: int, stage_length: int, power: float
    ):
        self.lr0, self.final_lr = lr0, final_lr
        self.num_stages, self.stage_length, self.power = num_stages, stage_length, power

    def __call__(self, step: int) -> float:
        if self.lr0 <= 0:
            return 1.0
        progress = min((step // self.stage_length) / self.num_stages, 1.0)
        return (self.lr0 - progress**self.power * (self.lr0 - self.final_lr)) / self.lr0
