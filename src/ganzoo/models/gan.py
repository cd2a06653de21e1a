"""The original GAN (Goodfellow et al. 2014, "Generative Adversarial Nets").

D maximises ``log D(x) + log(1 - D(G(z)))``; G minimises ``log(1 - D(G(z)))`` (minimax) or
maximises ``log D(G(z))`` (non-saturating). Two update schedules:

- ``alternating`` (the paper's Algorithm 1): every training batch is one minibatch of the
  discriminator's k-step inner loop, so D takes one step on each batch (each with its own real
  examples and fresh noise) and G takes one step, on fresh noise, after every k-th D step.
- ``simultaneous`` (Goodfellow's released pylearn2 code): one minibatch, one forward pass of
  ``D(x)`` and ``D(G(z))`` (sharing dropout masks), each player's gradient taken from its own
  cost, and both players stepped once.

``pack`` > 1 is PacGAN (Lin et al. 2018): D judges ``pack`` samples at once, real with real and
fake with fake, concatenated along the feature (channel) axis; the paper's GAN is ``pack`` 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ganzoo import losses
from ganzoo.models.base import GenerativeModel, OptimizerFactory, SchedulerFactory
from ganzoo.models.priors import Prior

Schedule = Literal["alternating", "simultaneous"]


class GAN(GenerativeModel):
    """Goodfellow et al. 2014 with manual optimization; players ``discriminator``, ``generator``.

    Args:
        generator, discriminator: the networks (modules). D outputs logits.
        optimizer: ``{player: optimizer factory}`` (parameters -> optimizer, e.g. a ``partial``).
        loss: ``{"d": fn(real_logits, fake_logits), "g": fn(fake_logits)}`` (callables),
            e.g. ``losses.d_loss_standard`` with ``losses.g_loss_nonsaturating``.
        latent_dim: size of z.
        prior: a ``ganzoo.models.priors.Prior`` of dimension ``latent_dim``; None is N(0, I).
        schedule: ``alternating`` (Algorithm 1) or ``simultaneous`` (pylearn2's single step).
        k: discriminator steps per generator step (``alternating`` only).
        d_loss_weight: factor on D's loss; Goodfellow's code uses 0.5.
        r1_gamma: weight gamma of the R1 penalty ``gamma / 2 E ||grad_x D(x)||^2`` on real data
            added to D's loss (Mescheder et al. 2018); 0 is off (the paper's GAN).
        r1_every: lazy R1 (Karras et al. 2020, StyleGAN2): the penalty enters D's loss on one
            batch in ``r1_every`` only (the first, then every ``r1_every``-th), weighted
            ``r1_every * gamma / 2`` so that its average weight stays ``gamma / 2``; the
            optimizers are not adjusted. 1 is every batch.
        top_k: ``{decay, min_fraction}``: top-k generator updates (Sinha et al. 2020), G's loss
            on the ``max(decay ** epoch, min_fraction)`` share of its batch that D rates most
            realistic; None is off (the paper's GAN).
        instance_noise: ``{std, batches}``: annealed instance noise (Sonderby et al. 2017,
            Arjovsky & Bottou 2017): in training, every sample D judges, real and fake, in D's
            and G's steps alike, gets Gaussian noise of standard deviation
            ``std * max(0, 1 - t / batches)`` at batch ``t`` (0-based), added before packing;
            from batch ``batches`` on D sees clean samples; the R1 penalty is taken at the
            noised real samples. Validation never adds it. None is off (the paper's GAN).
        pack: PacGAN's packing degree m (Lin et al. 2018): D sees each batch of ``B`` samples
            as ``B // m`` packed samples of ``m`` samples each, concatenated along dimension 1
            (features of flat data, channels of images), so its input has ``m`` times the
            features or channels of one sample; 1 is off (the paper's GAN).
        lr_scheduler: optional ``{player: scheduler factory}`` (optimizer -> scheduler; the key
            ``all`` for every player without its own entry), stepped once per batch.
        num_fixed_samples: size of the fixed noise batch used for sample grids.
        ema: ``{decay, start, use}`` of the moving average of G (and E) used for sampling and
            evaluation (``GenerativeModel.inference_network``); decay None is off.
        compile: ``model.compile``, ``torch.compile`` every network before training (false, true
            or ``torch.compile`` keyword arguments; see ``GenerativeModel.configure_model``).
    """

    players = ("discriminator", "generator")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer: dict[str, OptimizerFactory],
        loss: dict[str, Callable[..., Tensor]],
        latent_dim: int = 100,
        prior: Prior | None = None,
        schedule: Schedule = "alternating",
        k: int = 1,
        d_loss_weight: float = 1.0,
        r1_gamma: float = 0.0,
        r1_every: int = 1,
        top_k: dict[str, float] | None = None,
        instance_noise: dict[str, float] | None = None,
        pack: int = 1,
        lr_scheduler: dict[str, SchedulerFactory | None] | None = None,
        num_fixed_samples: int = 64,
        ema: dict[str, Any] | None = None,
        compile: bool | dict[str, Any] = False,
    ):
        super().__init__(
            latent_dim=latent_dim,
            prior=prior,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            num_fixed_samples=num_fixed_samples,
            ema=ema,
            compile=compile,
        )
        if schedule not in ("alternating", "simultaneous"):
            raise ValueError(
                f"model.schedule must be 'alternating' or 'simultaneous', got {schedule!r}"
            )
        if k < 1:
            raise ValueError(
                f"model.k (discriminator steps per generator step) must be >= 1, got {k}"
            )
        if schedule == "simultaneous" and k != 1:
            raise ValueError(
                "model.k > 1 needs model.schedule=alternating (simultaneous takes one step each)"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.d_loss_fn: Callable[[Tensor, Tensor], Tensor] = loss["d"]
        self.g_loss_fn: Callable[[Tensor], Tensor] = loss["g"]
        self.schedule = schedule
        self.k = k
        self.d_loss_weight = d_loss_weight
        if r1_gamma < 0:
            raise ValueError(f"model.r1_gamma must be >= 0 (0 is off), got {r1_gamma}")
        self.r1_gamma = r1_gamma
        if r1_every < 1:
            raise ValueError(
                f"model.r1_every (batches per R1 penalty) must be >= 1, got {r1_every}"
            )
        self.r1_every = int(r1_every)
        if pack < 1:
            raise ValueError(f"model.pack (PacGAN's packing degree) must be >= 1, got {pack}")
        self.pack = int(pack)
        self.top_k = dict(top_k) if top_k else None
        if self.top_k is not None:
            unknown = sorted(set(self.top_k) - {"decay", "min_fraction"})
            if unknown:
                raise ValueError(
                    f"model.top_k has unknown keys {unknown}: it takes decay and min_fraction"
                )
            decay, least = self.top_k.get("decay", 0.99), self.top_k.get("min_fraction", 0.5)
            if not (0.0 < decay <= 1.0 and 0.0 < least <= 1.0):
                raise ValueError(
                    "model.top_k needs 0 < decay <= 1 and 0 < min_fraction <= 1, got "
                    f"decay={decay}, min_fraction={least}"
                )
            self.top_k = {"decay": float(decay), "min_fraction": float(least)}
        self.instance_noise = dict(instance_noise) if instance_noise else None
        if self.instance_noise is not None:
            unknown = sorted(set(self.instance_noise) - {"std", "batches"})
            std, span = self.instance_noise.get("std"), self.instance_noise.get("batches")
            if unknown or std is None or span is None:
                raise ValueError(
                    "model.instance_noise takes std and batches, e.g. {std: 0.5, batches: 16000}, "
                    f"got {self.instance_noise}"
                )
            if not (std >= 0 and span >= 1):
                raise ValueError(
                    f"model.instance_noise needs std >= 0 and batches >= 1, got std={std}, "
                    f"batches={span}"
                )
            self.instance_noise = {"std": float(std), "batches": int(span)}

    def setup(self, stage: str) -> None:
        # Goodfellow's init_sigmoid_bias_from_marginals: networks that ask for it get the
        # training data's per-pixel mean. Runs before a checkpoint is restored, so resuming keeps
        # the trained bias.
        init = getattr(self.generator, "init_from_data", None)
        datamodule = (
            getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        )
        if stage == "fit" and callable(init) and datamodule is not None:
            init(datamodule)

    # --- Algorithm 1 -----------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        if self.schedule == "simultaneous":
            self._simultaneous_step(x)
            return
        opt = self.player_optimizers()
        n = x.shape[0]

        # Discriminator: one step of the k-step inner loop, on this batch and fresh noise.
        with self.toggled_optimizer(opt["discriminator"]):
            with torch.no_grad():
                fake = self.generator(self.prior.sample(n))
            x = self._r1_input(self.packed(self.noised(x)))
            real_logits, fake_logits = self.discriminator(x), self.critic(self.noised(fake))
            loss_d = self._d_loss(x, real_logits, fake_logits)
            self._step(opt["discriminator"], loss_d)
        self._log_d(loss_d, real_logits, fake_logits)

        # Generator: one step after every k-th discriminator step, on fresh noise.
        if (self.batches_seen + 1) % self.k == 0:
            with self.toggled_optimizer(opt["generator"]):
                fake = self.noised(self.generator(self.prior.sample(n)))
                loss_g = self._g_loss(self.critic(fake))
                self._step(opt["generator"], loss_g)
            self.log("train/loss_g", loss_g, prog_bar=True)

    def _simultaneous_step(self, x: Tensor) -> None:
        """pylearn2's step: one minibatch, both costs through the same D pass, one update each.

        Both gradients are taken at the same parameters, each from its own cost, before either
        player steps.
        """
        opt = self.player_optimizers()
        fake = self.generator(self.prior.sample(x.shape[0]))
        x = self._r1_input(self.packed(self.noised(x)))
        real_logits, fake_logits = self.discriminator(x), self.critic(self.noised(fake))
        loss_d = self._d_loss(x, real_logits, fake_logits)
        loss_g = self._g_loss(fake_logits)

        with self.toggled_optimizer(opt["discriminator"]):
            self._backward(opt["discriminator"], loss_d, retain_graph=True)
        with self.toggled_optimizer(opt["generator"]):
            self._backward(opt["generator"], loss_g)
        self._optimizer_step(opt["discriminator"])
        self._optimizer_step(opt["generator"])
        self._log_d(loss_d, real_logits, fake_logits)
        self.log("train/loss_g", loss_g, prog_bar=True)

    def packed(self, x: Tensor) -> Tensor:
        """``pack`` consecutive samples as one (PacGAN), concatenated along dimension 1: ``(B, C,
        ...) -> (B // pack, pack * C, ...)``; a remainder of fewer than ``pack`` samples is left
        out. The identity for ``pack`` 1."""
        m = self.pack
        if m == 1:
            return x
        n = x.shape[0] - x.shape[0] % m
        if n == 0:
            raise ValueError(
                f"a batch of {x.shape[0]} samples holds no packed sample of model.pack={m}"
            )
        return x[:n].reshape(n // m, m * x.shape[1], *x.shape[2:])

    def instance_noise_std(self) -> float:
        """The standard deviation of the instance noise at this batch (0 without
        ``model.instance_noise`` and once it has been annealed away)."""
        if self.instance_noise is None:
            return 0.0
        left = 1.0 - self.batches_seen / self.instance_noise["batches"]
        return self.instance_noise["std"] * max(0.0, left)

    def noised(self, x: Tensor) -> Tensor:
        """``x`` plus this batch's instance noise (training only; the identity without it)."""
        std = self.instance_noise_std()
        if std == 0.0:
            return x
        return x + std * torch.randn_like(x)

    def critic(self, x: Tensor) -> Tensor:
        """D's logits for a batch of samples: one per packed sample (one per sample without
        packing)."""
        return self.discriminator(self.packed(x))

    @property
    def judged_together(self) -> int:
        return self.pack

    def judge(self, x: Tensor) -> Tensor:
        return self.critic(x).reshape(-1)

    def top_k_fraction(self) -> float:
        """The share of the fake batch G learns from this epoch (Sinha et al. 2020):
        ``max(decay ** epoch, min_fraction)``; 1 without ``model.top_k``."""
        if self.top_k is None:
            return 1.0
        return max(self.top_k["decay"] ** self.current_epoch, self.top_k["min_fraction"])

    def _g_loss(self, fake_logits: Tensor) -> Tensor:
        """G's loss on its samples' logits; with ``model.top_k``, on the ``k`` samples D rates
        most realistic only (the others' gradients are zero)."""
        n = fake_logits.shape[0]
        k = min(n, max(1, math.ceil(self.top_k_fraction() * n)))
        if k < n:
            fake_logits = fake_logits.topk(k, dim=0).values
        return self.g_loss_fn(fake_logits)

    def _r1_due(self) -> bool:
        """Whether this batch's D loss carries the R1 penalty (every ``r1_every``-th batch)."""
        return self.r1_gamma > 0 and self.batches_seen % self.r1_every == 0

    def _r1_input(self, x: Tensor) -> Tensor:
        """The real batch, made to require grad when the R1 penalty needs its gradient."""
        return x.detach().requires_grad_(True) if self._r1_due() else x

    def _d_loss(self, x: Tensor, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's loss (times ``d_loss_weight``), plus ``r1_every * r1_gamma / 2`` times the R1
        penalty on the batches that carry it."""
        loss_d = self.d_loss_weight * self.d_loss_fn(real_logits, fake_logits)
        if self._r1_due():
            penalty = losses.r1_penalty(real_logits, x)
            self.log("train/r1", penalty.detach())
            loss_d = loss_d + 0.5 * self.r1_gamma * self.r1_every * penalty
        return loss_d

    def _log_d(self, loss_d: Tensor, real_logits: Tensor, fake_logits: Tensor) -> None:
        if not self.logs_this_batch:
            return
        self.log_dict(
            {
                "train/d_real": torch.sigmoid(real_logits.detach()).mean(),
                "train/d_fake": torch.sigmoid(fake_logits.detach()).mean(),
            }
        )
        if self.instance_noise is not None:
            self.log("train/instance_noise", self.instance_noise_std())
        self.log("train/loss_d", loss_d, prog_bar=True)

    # --- validation: D's view of held-out data ----------------------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        fake = self.generator(self.prior.sample(x.shape[0]))
        real_logits, fake_logits = self.critic(x), self.critic(fake)
        self.log_dict(
            {
                "val/loss_d": self.d_loss_weight * self.d_loss_fn(real_logits, fake_logits),
                "val/loss_g": self.g_loss_fn(fake_logits),
                "val/d_real": torch.sigmoid(real_logits).mean(),
                "val/d_fake": torch.sigmoid(fake_logits).mean(),
            },
            on_epoch=True,
        )

    # --- inference --------------------------------------------------------------------------

    def forward(self, z: Tensor) -> Tensor:
        return self.generate(z)
