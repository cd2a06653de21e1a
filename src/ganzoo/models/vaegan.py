"""VAE/GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE whose reconstruction likelihood is measured in the feature space ``Dis_l`` of a GAN
discriminator, trained together with that discriminator. With ``x~ = Dec(z)``, ``z ~ Enc(x)`` and
``x_p = Dec(z_p)``, ``z_p ~ N(0, I)`` (REFERENCE.md section 2):

- ``L_prior = KL(q(z|x) || N(0, I))``
- ``L_llike = -log N(Dis_l(x) | Dis_l(x~), I)`` (or seed 003's mean squared feature error)
- ``L_GAN = BCE(D(x), 1) + BCE(D(x_p), 0) [+ BCE(D(x~), 0)]``, D's cross-entropy (the paper
  writes it with the opposite sign); the reconstruction term is optional.

Gradient routing, exactly as the method says:

- encoder:       ``L_prior + beta * L_llike``        (no gradient from any GAN term)
- decoder:       ``gamma * L_llike - L_GAN``          (saturating) or its non-saturating variant
- discriminator: ``L_GAN``                            (no gradient from ``L_llike``)

Update order: the paper's Algorithm 1 computes every loss from one minibatch and one forward pass,
then updates the three parameter sets, each with the gradient of its own loss. So does
:meth:`VAEGAN.training_step`: one forward pass; each player's gradient taken in its own
``toggled_optimizer`` block (only that player's parameters receive a gradient) before any
parameter changes; then one step per player. The official code (deeppy) does the same: one graph, one backward pass,
gradients routed by scaling, then one update of each parameter set.

D runs once over the concatenated batch ``[x, x~, x_p]`` and yields both its logits and ``Dis_l``,
so BatchNorm statistics in D are those of the three groups together (the official code runs D
twice: ``Dis_l`` over ``[x~, x]`` and the logits over ``[x, (x~,) x_p]``). When D's loss leaves the
reconstructions out, their logits are only logged (``train/d_recon``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ganzoo import losses
from ganzoo.models.base import GenerativeModel, OptimizerFactory, SchedulerFactory

LlikeFn = Callable[[Tensor, Tensor], Tensor]
DLossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
DecLossFn = Callable[[Tensor, Tensor | None], Tensor]


class VAEGAN(GenerativeModel):
    """Larsen et al. 2016 with manual optimization; players ``encoder``, ``generator`` (the
    decoder) and ``discriminator``, one optimizer each.

    Args:
        encoder: the encoder network, ``x -> (mu, logvar)``.
        generator: the decoder, ``z -> x``.
        discriminator: ``forward(x) -> logits (N,)`` and
            ``forward_with_features(x) -> (logits, Dis_l(x))`` (``ganzoo.nets.vaegan``).
        optimizer: ``{player: optimizer factory}`` (parameters -> optimizer) for the three players.
        loss: ``{"d": fn(real, prior, recon_or_None), "g": fn(prior, recon_or_None)}``: D's
            ``L_GAN`` (``losses.d_loss_vaegan``) and the decoder's adversarial term
            (``losses.dec_gan_loss_minimax`` = ``-L_GAN``, or ``dec_gan_loss_nonsaturating``).
        llike: ``fn(real_features, fake_features)``: ``losses.feature_gaussian_nll`` (official
            code) or ``losses.feature_mse`` (seed 003).
        latent_dim: size of z. The prior is N(0, I) (the KL term assumes it).
        gamma: weight of ``L_llike`` in the decoder's loss.
        beta: weight of ``L_llike`` in the encoder's loss (seed 003: 5; the paper: 1).
        kl_weight: weight of ``L_prior`` in the encoder's loss.
        kl_per_pixel: divide the KL by the number of values in one sample (784 on MNIST), as
            seed 003 does (its KL is summed over the batch and divided by ``batch * 784``).
        discriminate_reconstructions: include ``BCE(D(x~), 0)`` in ``L_GAN`` and, likewise, the
            reconstructions in the decoder's adversarial term. The official CelebA run: false.
        gate_low, gate_high: the official code's equilibrium gate (null = off). From this batch's
            ``real = BCE(D(x), 1)`` and ``fake = BCE(D(fakes D sees), 0)``: D's update is skipped
            when ``min(real, fake) < gate_low``; the decoder's when ``max(real, fake) >
            gate_high``; when both would be skipped, neither is. Official: 0.33 and 1.03
            (equilibrium 0.68, margin 0.35). Decided on the host, once per batch (one read of
            the two losses); a shut gate skips the step (the gradient is still computed).
        gate_whole_decoder_step: what the gate skips for the decoder. True: its whole step (the
            official code, where ``gamma`` is tiny and the step is nearly all GAN); false: only
            its adversarial term (the decoder still follows ``gamma * L_llike``).
        lr_scheduler: optional ``{player: scheduler factory}`` (optimizer -> scheduler; the key
            ``all`` for every player without its own entry), stepped once per batch.
        num_fixed_samples: size of the fixed noise batch used for sample grids.
        ema: ``{decay, start, use}`` of the moving average of G (and E) used for sampling and
            evaluation (``GenerativeModel.inference_network``); decay None is off.
        compile: ``model.compile``, ``torch.compile`` every network before training (false, true
            or ``torch.compile`` keyword arguments; see ``GenerativeModel.configure_model``).
    """

    players = ("encoder", "generator", "discriminator")
    has_encoder = True

    def __init__(
        self,
        encoder: nn.Module,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer: dict[str, OptimizerFactory],
        loss: dict[str, Callable[..., Tensor]],
        llike: LlikeFn,
        latent_dim: int = 128,
        gamma: float = 1.0,
        beta: float = 1.0,
        kl_weight: float = 1.0,
        kl_per_pixel: bool = False,
        discriminate_reconstructions: bool = True,
        gate_low: float | None = None,
        gate_high: float | None = None,
        gate_whole_decoder_step: bool = True,
        lr_scheduler: dict[str, SchedulerFactory | None] | None = None,
        num_fixed_samples: int = 64,
        ema: dict[str, Any] | None = None,
        compile: bool | dict[str, Any] = False,
    ):
        super().__init__(
            latent_dim=latent_dim,
            prior=None,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            num_fixed_samples=num_fixed_samples,
            ema=ema,
            compile=compile,
        )
        for key, value in (("gamma", gamma), ("beta", beta), ("kl_weight", kl_weight)):
            if value < 0:
                raise ValueError(f"model.{key} is a loss weight and must be >= 0, got {value}")
        if gate_low is not None and gate_high is not None and not gate_low < gate_high:
            raise ValueError(
                f"model.gate_low={gate_low} must be below model.gate_high={gate_high} "
                "(official: 0.33 and 1.03); set either to null to switch that side off"
            )
        missing = {"d", "g"} - set(loss or {})
        if missing:
            raise ValueError(
                f"model.loss needs entries {sorted(missing)} (see conf/model/loss/vaegan_*.yaml)"
            )
        self.encoder = encoder
        self.generator = generator
        self.discriminator = discriminator
        if not hasattr(self.discriminator, "forward_with_features"):
            raise TypeError(
                f"model.discriminator ({type(self.discriminator).__name__}) has no feature layer: "
                "VAE/GAN needs a discriminator from ganzoo.nets.vaegan (forward_with_features)"
            )
        self.d_loss_fn: DLossFn = loss["d"]
        self.g_loss_fn: DecLossFn = loss["g"]
        self.llike_fn: LlikeFn = llike
        self.gamma, self.beta, self.kl_weight = gamma, beta, kl_weight
        self.kl_per_pixel = kl_per_pixel
        self.discriminate_reconstructions = discriminate_reconstructions
        self.gate_low, self.gate_high = gate_low, gate_high
        self.gate_whole_decoder_step = gate_whole_decoder_step
        #: Width of the data's value range; pixel errors are logged in units of it ([0, 1]).
        self.pixel_range = 1.0

    def setup(self, stage: str) -> None:
        datamodule = (
            getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        )
        value_range = getattr(datamodule, "value_range", None)
        if value_range is not None:
            self.pixel_range = float(value_range[1]) - float(value_range[0])

    # --- the encoder ---------------------------------------------------------------------

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of ``q(z|x) = N(mu, diag exp(logvar))``, each ``(N, latent_dim)``."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(
        mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + torch.exp(0.5 * logvar) * eps

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean ``mu(x)``: a deterministic code, the one ``reconstruct`` decodes
        (as the official code does at test time). :meth:`encode_sample` draws from q(z|x).
        Uses the encoder's moving average when enabled (``inference_network``)."""
        return self.inference_network("encoder")(x)[0]

    def encode_sample(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterised sample ``z ~ q(z|x)``."""
        return self.reparameterize(*self.inference_network("encoder")(x), generator=generator)

    # --- one forward pass: every term of every player's loss ------------------------------

    def forward_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Encode, decode, sample from the prior and run D once over ``[x, x~, x_p]``.

        Returns the loss terms (``kl`` in nats per sample, before ``kl_per_pixel``), D's logits
        and the reconstruction ``x_tilde``; nothing is detached, routing happens in the backward.
        """
        n = x.shape[0]
        mu, logvar = self.posterior(x)
        x_tilde = self.generator(self.reparameterize(mu, logvar))
        x_prior = self.generator(self.prior.sample(n))
        logits, features = self.discriminator.forward_with_features(
            torch.cat([x, x_tilde, x_prior])
        )
        real_logits, recon_logits, prior_logits = logits.split(n)
        real_features, recon_features, _ = features.split(n)
        seen_recon = recon_logits if self.discriminate_reconstructions else None
        return {
            "kl": losses.kl_standard_normal(mu, logvar),
            "llike": self.llike_fn(real_features, recon_features),
            "gan": self.d_loss_fn(real_logits, prior_logits, seen_recon),
            "dec_gan": self.g_loss_fn(prior_logits, seen_recon),
            "real_logits": real_logits,
            "recon_logits": recon_logits,
            "prior_logits": prior_logits,
            "x_tilde": x_tilde,
        }

    def gate(self, terms: dict[str, Tensor]) -> tuple[bool | None, bool | None]:
        """The equilibrium gate, decided on the host once per batch (under DDP, on the losses
        averaged over the ranks, so that every rank takes the same steps): ``(d_open,
        dec_open)``, or None where that side of the gate is off."""
        if self.gate_low is None and self.gate_high is None:
            return None, None
        real = losses.bce_real(terms["real_logits"].detach())
        fakes = [terms["prior_logits"]]
        if self.discriminate_reconstructions:
            fakes.append(terms["recon_logits"])
        fake = losses.bce_fake(torch.cat(fakes).detach())
        both_losses = torch.stack([real, fake])
        if self._trainer is not None and self.trainer.world_size > 1:
            # Under DDP, one decision for all ranks: the gate of the global batch.
            both_losses = self.trainer.strategy.reduce(both_losses, reduce_op="mean")
        real, fake = both_losses.tolist()  # the batch's one read on the host
        low, high = min(real, fake), max(real, fake)
        d_shut = self.gate_low is not None and low < self.gate_low
        dec_shut = self.gate_high is not None and high > self.gate_high
        both = d_shut and dec_shut
        d_open = (not d_shut or both) if self.gate_low is not None else None
        dec_open = (not dec_shut or both) if self.gate_high is not None else None
        return d_open, dec_open

    def player_losses(
        self, terms: dict[str, Tensor], dec_gan_open: Tensor | float | None = None
    ) -> dict[str, Tensor]:
        """Each player's loss; ``dec_gan_open`` (0/1) switches the decoder's GAN term off."""
        kl = terms["kl"]
        if self.kl_per_pixel:
            kl = kl / terms["x_tilde"][0].numel()
        dec_gan = terms["dec_gan"] if dec_gan_open is None else terms["dec_gan"] * dec_gan_open
        return {
            "encoder": self.kl_weight * kl + self.beta * terms["llike"],
            "generator": self.gamma * terms["llike"] + dec_gan,
            "discriminator": terms["gan"],
        }

    # --- Algorithm 1 ---------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        opt = self.player_optimizers()
        terms = self.forward_terms(x)
        d_open, dec_open = self.gate(terms)
        gan_only = dec_open is not None and not self.gate_whole_decoder_step
        loss = self.player_losses(terms, float(dec_open) if gan_only else None)

        # Every player's gradient of its own loss, taken at the same parameters, before any step.
        with self.toggled_optimizer(opt["encoder"]):
            self._backward(opt["encoder"], loss["encoder"], retain_graph=True)
        with self.toggled_optimizer(opt["generator"]):
            self._backward(opt["generator"], loss["generator"], retain_graph=True)
        with self.toggled_optimizer(opt["discriminator"]):
            self._backward(opt["discriminator"], loss["discriminator"])

        # Then one step each, where the gate is open.
        self._optimizer_step(opt["encoder"])
        gated_step(opt["generator"], None if gan_only else dec_open, self._optimizer_step)
        gated_step(opt["discriminator"], d_open, self._optimizer_step)

        self._log_train(x, terms, loss, d_open, dec_open)

    def _log_train(self, x, terms, loss, d_open, dec_open) -> None:
        if not self.logs_this_batch:
            return
        metrics = {
            "train/loss_kl": terms["kl"],
            "train/loss_llike": terms["llike"],
            "train/loss_gan": terms["gan"],
            "train/loss_dec_gan": terms["dec_gan"],
            "train/loss_enc": loss["encoder"],
            "train/loss_dec": loss["generator"],
            "train/loss_d": loss["discriminator"],
            "train/d_real": torch.sigmoid(terms["real_logits"]).mean(),
            "train/d_fake": torch.sigmoid(terms["prior_logits"]).mean(),
            "train/d_recon": torch.sigmoid(terms["recon_logits"]).mean(),
            "train/recon_mse": self._pixel_mse(terms["x_tilde"], x),
        }
        if d_open is not None:
            metrics["train/d_update"] = torch.tensor(float(d_open))
        if dec_open is not None:
            metrics["train/dec_update"] = torch.tensor(float(dec_open))
        shown = ("train/loss_enc", "train/loss_dec", "train/loss_d")
        self.log_dict({k: v.detach() for k, v in metrics.items() if k not in shown})
        self.log_dict({k: metrics[k].detach() for k in shown}, prog_bar=True)

    def _pixel_mse(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Mean squared pixel error in units of the data range (i.e. for pixels in [0, 1])."""
        return (x_hat.detach() - x).pow(2).mean() / self.pixel_range**2

    # --- validation: held-out reconstructions and D's view -------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        mu, logvar = self.posterior(x)
        x_rec = self.generator(mu)
        x_prior = self.generator(self.prior.sample(x.shape[0]))
        logits, features = self.discriminator.forward_with_features(torch.cat([x, x_rec, x_prior]))
        real_logits, recon_logits, prior_logits = logits.split(x.shape[0])
        real_features, recon_features, _ = features.split(x.shape[0])
        self.log_dict(
            {
                "val/recon_mse": self._pixel_mse(x_rec, x),
                "val/recon_l1": (x_rec - x).abs().mean() / self.pixel_range,
                "val/loss_kl": losses.kl_standard_normal(mu, logvar),
                "val/loss_llike": self.llike_fn(real_features, recon_features),
                "val/d_real": torch.sigmoid(real_logits).mean(),
                "val/d_fake": torch.sigmoid(prior_logits).mean(),
                "val/d_recon": torch.sigmoid(recon_logits).mean(),
            },
            on_epoch=True,
        )

    # --- inference -----------------------------------------------------------------------

    def forward(self, z: Tensor) -> Tensor:
        return self.generate(z)


def gated_step(opt, open_: Tensor | bool | None, step: Callable[[Any], None] | None = None) -> None:
    """``opt.step()`` (or ``step(opt)``) unless the gate ``open_`` (a host or one-element
    boolean) is shut."""
    if open_ is not None and not bool(open_):
        return
    if step is None:
        opt.step()
    else:
        step(opt)
