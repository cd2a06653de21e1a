"""alpha-GAN (Rosca et al. 2017, "Variational Approaches for Auto-Encoding Generative
Adversarial Networks", arXiv 1706.04987).

Four networks: a deterministic encoder E (x -> z), a generator G (z -> x), an image
discriminator D and a code discriminator C (prior codes z ~ N(0, I) versus codes E(x)). With the
adversarial term R (the paper's log-odds ``R(l) = -l``, or the non-saturating ``BCE(l, 1)``):

- E minimises ``lambda_E |x - G(E(x))|_1 + R(C(E(x)))``
- G minimises ``lambda_G |x - G(E(x))|_1 + w [R(D(G(E(x)))) + R(D(G(z)))]``
- D minimises ``BCE(D(x), 1) + w [BCE(D(G(E(x))), 0) + BCE(D(G(z)), 0)]``
- C minimises ``BCE(C(z), 1) + BCE(C(E(x)), 0)``: the PRIOR is real (arXiv v1 swaps the two;
  the authors confirmed the error).

``w = 1`` is the paper's sum of a reconstruction and a sample term; ``w = 0.5`` (``fake_weight``)
is seed 000's mean over one pooled fake batch ``[G(E(x)); G(z)]``. An optional latent
reconstruction ``|E(G(z)) - z|_1`` (seed 000's ``z_lambd``) joins the losses of E and G.

Players, chosen by ``joint_encoder_generator``:

- separate (the paper, seed 002): ``encoder``, ``generator``, ``discriminator``,
  ``code_discriminator``, one optimizer each.
- joint (seed 000): ``encoder_generator`` (one optimizer over E's and G's parameters),
  ``discriminator``, ``code_discriminator``. The joint player minimises the sum
  ``lambda |x - G(E(x))|_1 + w [R(D(G(E(x)))) + R(D(G(z)))] + R(C(E(x)))``, so E also receives
  D's gradient through the reconstructions (the paper's E sees only C's); G still sees no C term.

The schedule is the per-batch sequence of player updates, e.g. seed 000's ``n_iter=(2, 1, 1)`` is
``[encoder_generator, encoder_generator, discriminator, code_discriminator]`` and seed 002's is
``[encoder, encoder, generator, generator, discriminator, code_discriminator]``. Every update
draws fresh prior codes. With ``split_batch=false`` every update sees the whole batch (seed 000);
with ``split_batch=true`` each takes its own slice of it, which approximates seed 002's fresh
random batch per update: the datamodule's batch size is then the sum of the per-update batches.

The WGAN-GP variant (seed 000's AlphaWGAN) swaps the loss functions for critic losses by config
and sets ``gradient_penalty_weight`` (10): the penalty is added to D's loss (interpolating real
images and the pooled fakes) and to C's (interpolating prior codes and encoder codes).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ganzoo.losses import gradient_penalty
from ganzoo.models.base import (
    GenerativeModel,
    OptimizerFactory,
    SchedulerFactory,
    evaluating,
)
from ganzoo.models.priors import Prior

SEPARATE_PLAYERS = ("encoder", "generator", "discriminator", "code_discriminator")
JOINT_PLAYERS = ("encoder_generator", "discriminator", "code_discriminator")

#: The networks each player's optimizer owns.
PLAYER_NETWORKS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder",),
    "generator": ("generator",),
    "encoder_generator": ("encoder", "generator"),
    "discriminator": ("discriminator",),
    "code_discriminator": ("code_discriminator",),
}

BATCH_NORM_IN_C_WARNING = (
    "model.code_discriminator contains batch norm. Both alpha-GAN implementations this recipe "
    "comes from (seeds 000 and 002) found that batch norm in the code discriminator breaks "
    "training: C sees a batch of prior codes and a batch of encoder codes separately, so "
    "per-batch normalisation rescales each batch to the same statistics and hides exactly the "
    "difference in mean and spread that C must detect (and gives E a useless signal). Set "
    "model.code_discriminator.batch_norm=false."
)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class AlphaGAN(GenerativeModel):
    """alpha-GAN with manual optimization and a configurable per-batch update schedule.

    Args:
        encoder, generator, discriminator, code_discriminator: the networks (modules). D and C
            output logits (critic scores for the WGAN-GP variant), ``(N,)``.
        optimizer: ``{player: optimizer factory}`` (parameters -> optimizer) for this model's
            players.
        loss: ``{"reconstruction": fn(x, x_hat), "adversarial": R(logits),
            "discriminator": fn(real, recon, sample, fake_weight),
            "code_discriminator": fn(prior, encoded)}`` (callables from
            :mod:`ganzoo.losses`).
        latent_dim: size of z.
        prior: a ``ganzoo.models.priors.Prior`` of dimension ``latent_dim``; None is N(0, I).
        joint_encoder_generator: one player (and optimizer) for E and G together (seed 000).
        schedule: per-batch sequence of player updates; default one update per player, in the
            paper's order (E, G, D, C).
        split_batch: give each update of the schedule its own slice of the batch.
        reconstruction_weight: lambda, on E's (and the joint player's) reconstruction term.
        generator_reconstruction_weight: lambda on G's term if it differs from E's (seed 002's
            CelebA: 1 for E, 5 for G); needs separate players.
        latent_reconstruction_weight: weight of ``|E(G(z)) - z|_1`` in E's and G's losses (0: off).
        fake_weight: ``w`` on each of the reconstruction and sample terms of D's and G's losses.
        gradient_penalty_weight: WGAN-GP penalty weight on D and C (0: off).
        lr_scheduler: optional ``{player: scheduler factory}`` (optimizer -> scheduler; the key
            ``all`` for every player without its own entry), stepped once per batch.
        num_fixed_samples: size of the fixed noise batch used for sample grids.
        ema: ``{decay, start, use}`` of the moving average of G (and E) used for sampling and
            evaluation (``GenerativeModel.inference_network``); decay None is off.
        compile: ``model.compile``, ``torch.compile`` every network before training (false, true
            or ``torch.compile`` keyword arguments; see ``GenerativeModel.configure_model``).
    """

    has_encoder = True

    def __init__(
        self,
        encoder: nn.Module,
        generator: nn.Module,
        discriminator: nn.Module,
        code_discriminator: nn.Module,
        optimizer: dict[str, OptimizerFactory],
        loss: dict[str, Callable[..., Tensor]],
        latent_dim: int = 128,
        prior: Prior | None = None,
        joint_encoder_generator: bool = False,
        schedule: Sequence[str] | None = None,
        split_batch: bool = False,
        reconstruction_weight: float = 1.0,
        generator_reconstruction_weight: float | None = None,
        latent_reconstruction_weight: float = 0.0,
        fake_weight: float = 1.0,
        gradient_penalty_weight: float = 0.0,
        lr_scheduler: dict[str, SchedulerFactory | None] | None = None,
        num_fixed_samples: int = 64,
        ema: dict[str, Any] | None = None,
        compile: bool | dict[str, Any] = False,
    ):
        # Set before the base class checks model.optimizer against the players.
        self.players = JOINT_PLAYERS if joint_encoder_generator else SEPARATE_PLAYERS
        _check_optimizer_players(optimizer, self.players, joint_encoder_generator)
        super().__init__(
            latent_dim=latent_dim,
            prior=prior,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            num_fixed_samples=num_fixed_samples,
            ema=ema,
            compile=compile,
        )
        self.schedule = _check_schedule(schedule, self.players)
        self.split_batch = split_batch
        self.reconstruction_weight = reconstruction_weight
        if generator_reconstruction_weight is None:
            generator_reconstruction_weight = reconstruction_weight
        if joint_encoder_generator and generator_reconstruction_weight != reconstruction_weight:
            raise ValueError(
                "model.generator_reconstruction_weight differs from "
                "model.reconstruction_weight, but the joint encoder_generator player has one "
                "reconstruction term: set it to null, or model.joint_encoder_generator=false for "
                "separate E and G updates"
            )
        self.generator_reconstruction_weight = generator_reconstruction_weight
        self.latent_reconstruction_weight = latent_reconstruction_weight
        #: Width of the data's value range; pixel errors are logged in units of it ([0, 1]).
        self.pixel_range = 1.0
        self.fake_weight = fake_weight
        self.gradient_penalty_weight = gradient_penalty_weight
        for key, value in (
            ("model.reconstruction_weight", reconstruction_weight),
            ("model.generator_reconstruction_weight", generator_reconstruction_weight),
            ("model.latent_reconstruction_weight", latent_reconstruction_weight),
            ("model.fake_weight", fake_weight),
            ("model.gradient_penalty_weight", gradient_penalty_weight),
        ):
            if value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")

        self.encoder = encoder
        self.generator = generator
        self.discriminator = discriminator
        self.code_discriminator = code_discriminator
        missing = sorted(
            {"reconstruction", "adversarial", "discriminator", "code_discriminator"} - set(loss)
        )
        if missing:
            raise ValueError(
                f"model.loss has no entry for {missing}: pick a loss group, e.g. "
                "model/loss=alphagan_logodds"
            )
        self.reconstruction_loss: Callable[[Tensor, Tensor], Tensor] = loss["reconstruction"]
        self.adversarial_loss: Callable[[Tensor], Tensor] = loss["adversarial"]
        self.d_loss_fn: Callable[..., Tensor] = loss["discriminator"]
        self.c_loss_fn: Callable[[Tensor, Tensor], Tensor] = loss["code_discriminator"]

        if has_batch_norm(self.code_discriminator):
            warnings.warn(BATCH_NORM_IN_C_WARNING, UserWarning, stacklevel=2)
        if gradient_penalty_weight > 0:
            for key, net in (
                ("discriminator", self.discriminator),
                ("code_discriminator", self.code_discriminator),
            ):
                if has_batch_norm(net):
                    warnings.warn(
                        f"model.{key} contains batch norm but model.gradient_penalty_weight > 0: "
                        "the gradient penalty is defined per sample and batch norm couples the "
                        "samples of a batch (WGAN-GP critics use none); set "
                        f"model.{key}.batch_norm=false",
                        UserWarning,
                        stacklevel=2,
                    )

    @torch.no_grad()
    def setup(self, stage: str) -> None:
        """Fail early, naming the key, when E's codes do not have the prior's size."""
        datamodule = (
            getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        )
        value_range = getattr(datamodule, "value_range", None)
        if value_range is not None:
            self.pixel_range = float(value_range[1]) - float(value_range[0])
        shape = getattr(datamodule, "shape", None)
        if stage != "fit" or shape is None:
            return
        # Lightning calls setup before it moves the weights: the probe goes where E's weights are
        # (self.device may already name the GPU).
        device = next(self.encoder.parameters()).device
        with evaluating(self):
            code_shape = tuple(self.encoder(torch.zeros(2, *shape, device=device)).shape[1:])
        if code_shape != (self.latent_dim,):
            raise ValueError(
                f"model.encoder makes codes of shape {list(code_shape)} but "
                f"model.latent_dim={self.latent_dim}: set model.encoder.latent_dim: "
                "${model.latent_dim}"
            )

    def player_parameters(self, player: str) -> Iterable[nn.Parameter]:
        return itertools.chain.from_iterable(
            getattr(self, net).parameters() for net in PLAYER_NETWORKS[player]
        )

    # --- the schedule: one block per player, in the paper's order ---------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        opts = self.player_optimizers()
        updates = {
            "encoder": self.encoder_step,
            "generator": self.generator_step,
            "encoder_generator": self.encoder_generator_step,
            "discriminator": self.discriminator_step,
            "code_discriminator": self.code_discriminator_step,
        }
        for player, x_i in zip(self.schedule, self._batches_for_updates(x), strict=True):
            updates[player](x_i, opts[player])

    def _batches_for_updates(self, x: Tensor) -> list[Tensor]:
        """The whole batch for every update, or (``split_batch``) a slice of it for each."""
        n = len(self.schedule)
        if not self.split_batch:
            return [x] * n
        if x.shape[0] < n:
            raise ValueError(
                f"model.split_batch=true gives each of the {n} updates of model.schedule its own "
                f"slice of the batch, but a batch of {x.shape[0]} leaves some update without data: "
                f"set data.batch_size to {n} x the batch size of one update"
            )
        return list(torch.tensor_split(x, n))

    def encoder_step(self, x: Tensor, opt) -> None:
        """E: ``lambda_E |x - G(E(x))|_1 + R(C(E(x)))`` (+ latent reconstruction)."""
        with self.toggled_optimizer(opt):
            z_hat = self.encoder(x)
            x_rec = self.generator(z_hat)
            l1 = self.reconstruction_loss(x, x_rec)
            code_logits = self.code_discriminator(z_hat)
            adv_code = self.adversarial_loss(code_logits)
            loss = self.reconstruction_weight * l1 + adv_code + self._latent_term(x.shape[0], "e")
            self._step(opt, loss)
        self.log("train/loss_e", loss, prog_bar=True)
        self._log_reconstruction(x, x_rec, l1)
        self.log_dict({"train/adv_e_code": adv_code, "train/c_encoded": _prob(code_logits)})

    def generator_step(self, x: Tensor, opt) -> None:
        """G: ``lambda_G |x - G(E(x))|_1 + w [R(D(G(E(x)))) + R(D(G(z)))]`` (+ latent term)."""
        with self.toggled_optimizer(opt):
            with torch.no_grad():
                z_hat = self.encoder(x)
            x_rec, recon_logits, sample_logits = self._decode_and_judge(z_hat)
            l1 = self.reconstruction_loss(x, x_rec)
            adv_recon = self.adversarial_loss(recon_logits)
            adv_sample = self.adversarial_loss(sample_logits)
            loss = (
                self.generator_reconstruction_weight * l1
                + self.fake_weight * (adv_recon + adv_sample)
                + self._latent_term(x.shape[0], "g")
            )
            self._step(opt, loss)
        self.log("train/loss_g", loss, prog_bar=True)
        self._log_reconstruction(x, x_rec, l1)
        self._log_generator_terms(adv_recon, adv_sample, recon_logits, sample_logits)

    def encoder_generator_step(self, x: Tensor, opt) -> None:
        """Joint E+G (seed 000), one backward pass through the summed loss
        ``lambda |x - G(E(x))|_1 + w [R(D(G(E(x)))) + R(D(G(z)))] + R(C(E(x)))``.

        E therefore also gets D's gradient through G(E(x)) (the paper's E sees only C's).
        """
        with self.toggled_optimizer(opt):
            z_hat = self.encoder(x)
            x_rec, recon_logits, sample_logits = self._decode_and_judge(z_hat)
            l1 = self.reconstruction_loss(x, x_rec)
            adv_recon = self.adversarial_loss(recon_logits)
            adv_sample = self.adversarial_loss(sample_logits)
            code_logits = self.code_discriminator(z_hat)
            adv_code = self.adversarial_loss(code_logits)
            loss = (
                self.reconstruction_weight * l1
                + self.fake_weight * (adv_recon + adv_sample)
                + adv_code
                + self._latent_term(x.shape[0], "eg")
            )
            self._step(opt, loss)
        self.log("train/loss_eg", loss, prog_bar=True)
        self._log_reconstruction(x, x_rec, l1)
        self._log_generator_terms(adv_recon, adv_sample, recon_logits, sample_logits)
        self.log_dict({"train/adv_e_code": adv_code, "train/c_encoded": _prob(code_logits)})

    def discriminator_step(self, x: Tensor, opt) -> None:
        """D: ``BCE(D(x), 1) + w [BCE(D(G(E(x))), 0) + BCE(D(G(z)), 0)]`` (+ gradient penalty)."""
        with self.toggled_optimizer(opt):
            n = x.shape[0]
            with torch.no_grad():
                fakes = self.generator(torch.cat([self.encoder(x), self.prior.sample(n)]))
            real_logits = self.discriminator(x)
            recon_logits, sample_logits = self.discriminator(fakes).split([n, n])
            loss = self.d_loss_fn(
                real_logits, recon_logits, sample_logits, fake_weight=self.fake_weight
            )
            if self.gradient_penalty_weight > 0:
                penalty = gradient_penalty(self.discriminator, torch.cat([x, x]), fakes)
                loss = loss + self.gradient_penalty_weight * penalty
                self.log("train/gp_d", penalty)
            self._step(opt, loss)
        self.log("train/loss_d", loss, prog_bar=True)
        self.log_dict(
            {
                "train/d_real": _prob(real_logits),
                "train/d_recon": _prob(recon_logits),
                "train/d_sample": _prob(sample_logits),
            }
        )

    def code_discriminator_step(self, x: Tensor, opt) -> None:
        """C: ``BCE(C(z), 1) + BCE(C(E(x)), 0)``, prior codes real (+ gradient penalty)."""
        with self.toggled_optimizer(opt):
            with torch.no_grad():
                z_hat = self.encoder(x)
            z = self.prior.sample(x.shape[0])
            prior_logits, encoded_logits = (
                self.code_discriminator(z),
                self.code_discriminator(z_hat),
            )
            loss = self.c_loss_fn(prior_logits, encoded_logits)
            if self.gradient_penalty_weight > 0:
                penalty = gradient_penalty(self.code_discriminator, z, z_hat)
                loss = loss + self.gradient_penalty_weight * penalty
                self.log("train/gp_c", penalty)
            self._step(opt, loss)
        self.log("train/loss_c", loss, prog_bar=True)
        self.log_dict(
            {"train/c_prior": _prob(prior_logits), "train/c_encoded": _prob(encoded_logits)}
        )

    # --- pieces shared by the steps --------------------------------------------------------

    def _decode_and_judge(self, z_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One G pass on ``[E(x); z]`` (fresh prior codes), one D pass on ``[G(E(x)); G(z)]``.

        Returns the reconstructions and D's logits on reconstructions and on samples.
        """
        n = z_hat.shape[0]
        fakes = self.generator(torch.cat([z_hat, self.prior.sample(n)]))
        recon_logits, sample_logits = self.discriminator(fakes).split([n, n])
        return fakes[:n], recon_logits, sample_logits

    def _latent_term(self, n: int, tag: str) -> Tensor | float:
        """``weight * |E(G(z)) - z|_1`` on fresh prior codes; logs ``train/latent_l1_<tag>``."""
        if self.latent_reconstruction_weight == 0:
            return 0.0
        z = self.prior.sample(n)
        latent_l1 = self.reconstruction_loss(z, self.encoder(self.generator(z)))
        self.log(f"train/latent_l1_{tag}", latent_l1)
        return self.latent_reconstruction_weight * latent_l1

    def _log_reconstruction(self, x: Tensor, x_rec: Tensor, l1: Tensor) -> None:
        if not self.logs_this_batch:
            return
        x_rec = x_rec.detach()
        self.log_dict(
            {
                "train/l1": l1,
                "train/recon_l1": (x - x_rec).abs().mean() / self.pixel_range,
                "train/recon_mse": (x - x_rec).pow(2).mean() / self.pixel_range**2,
            }
        )

    def _log_generator_terms(
        self, adv_recon: Tensor, adv_sample: Tensor, recon_logits: Tensor, sample_logits: Tensor
    ) -> None:
        if not self.logs_this_batch:
            return
        self.log_dict(
            {
                "train/adv_g_recon": adv_recon,
                "train/adv_g_sample": adv_sample,
                "train/d_recon": _prob(recon_logits),
                "train/d_sample": _prob(sample_logits),
            }
        )

    # --- validation: held-out reconstruction, and D's and C's view of held-out data ---------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        z_hat = self.encoder(x)
        x_rec = self.generator(z_hat)
        x_gen = self.generate(self.prior.sample(x.shape[0]))
        self.log_dict(
            {
                "val/recon_l1": (x - x_rec).abs().mean() / self.pixel_range,
                "val/recon_mse": (x - x_rec).pow(2).mean() / self.pixel_range**2,
                "val/d_real": _prob(self.discriminator(x)),
                "val/d_recon": _prob(self.discriminator(x_rec)),
                "val/d_sample": _prob(self.discriminator(x_gen)),
                "val/c_prior": _prob(self.code_discriminator(self.prior.sample(x.shape[0]))),
                "val/c_encoded": _prob(self.code_discriminator(z_hat)),
            },
            on_epoch=True,
        )

    # --- inference --------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """``E(x)``: the deterministic code of ``x`` (E's moving average when enabled)."""
        return self.inference_network("encoder")(x)

    def forward(self, z: Tensor) -> Tensor:
        return self.generate(z)

    def judge(self, x: Tensor) -> Tensor:
        loss = getattr(self.d_loss_fn, "func", self.d_loss_fn)
        if "wasserstein" in getattr(loss, "__name__", ""):
            raise ValueError(
                "this alpha-GAN's D is a Wasserstein critic: its scores are no logits of "
                "p_data / p_G, so discriminator rejection does not apply (drop rejection=...)"
            )
        return super().judge(x)


def _prob(logits: Tensor) -> Tensor:
    """Mean sigmoid of a batch of logits, for logs (for a WGAN critic: a squashed score)."""
    return torch.sigmoid(logits.detach()).mean()


def _check_optimizer_players(optimizer: Any, players: tuple[str, ...], joint: bool) -> None:
    keys = set(optimizer or {})
    if keys and keys != set(players):
        other = SEPARATE_PLAYERS if joint else JOINT_PLAYERS
        hint = (
            f" (those are the players of model.joint_encoder_generator={str(not joint).lower()}: "
            "set that, or pick the optimizer group that matches, e.g. "
            f"model/optimizer={'alphagan_joint_adam' if joint else 'alphagan_adam'})"
            if keys == set(other)
            else ""
        )
        raise ValueError(
            f"model.optimizer has entries {sorted(keys)} but this AlphaGAN's players are "
            f"{list(players)}{hint}"
        )


def _check_schedule(schedule: Sequence[str] | None, players: tuple[str, ...]) -> tuple[str, ...]:
    if schedule is None:
        return players
    if isinstance(schedule, str) or not all(isinstance(p, str) for p in schedule):
        raise ValueError(f"model.schedule must be a list of player names, got {schedule!r}")
    schedule = tuple(schedule)
    unknown = sorted(set(schedule) - set(players))
    if unknown:
        raise ValueError(
            f"model.schedule names {unknown}, which are not players of this AlphaGAN; its players "
            f"are {list(players)} (model.joint_encoder_generator decides between encoder + "
            "generator and one encoder_generator player)"
        )
    idle = [p for p in players if p not in schedule]
    if idle:
        raise ValueError(
            f"model.schedule={list(schedule)} never updates {idle}: add them to model.schedule"
        )
    return schedule
