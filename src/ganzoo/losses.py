"""Loss terms of every family, as pure functions of logits and tensors.

Notation (REFERENCE.md): ``l`` is a discriminator logit, sigma the sigmoid,
``BCE(l, 1) = softplus(-l)`` and ``BCE(l, 0) = softplus(l)``. Every function returns a
scalar: the mean over the batch of the per-sample term. Discriminators output logits, so all
terms use the softplus form, which is exact and stable where ``log(sigmoid(l) + eps)`` is not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_real(logits: Tensor) -> Tensor:
    """``mean BCE(l, 1) = mean -log sigma(l) = mean softplus(-l)``."""
    return F.softplus(-logits).mean()


def bce_fake(logits: Tensor) -> Tensor:
    """``mean BCE(l, 0) = mean -log(1 - sigma(l)) = mean softplus(l)``."""
    return F.softplus(logits).mean()


# --- The original GAN (Goodfellow et al. 2014) ------------------------------------------------


def d_loss_standard(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator loss of Algorithm 1, to be minimised.

    ``-[log D(x) + log(1 - D(G(z)))] = BCE(D(x), 1) + BCE(D(G(z)), 0)``. Both the minimax and
    the non-saturating GAN train D with this loss; they differ in the generator's loss only.
    """
    return bce_real(real_logits) + bce_fake(fake_logits)


def g_loss_minimax(fake_logits: Tensor) -> Tensor:
    """Generator loss of the minimax game: minimise ``log(1 - D(G(z))) = -softplus(l)``.

    Saturates when D rejects samples confidently (paper, section 3).
    """
    return -F.softplus(fake_logits).mean()


def g_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: maximise ``log D(G(z))``, i.e. minimise ``BCE(l, 1)``."""
    return bce_real(fake_logits)


# --- VAE/GAN (Larsen et al. 2016) -------------------------------------------------------------


# Sign convention: ``L_GAN`` below is the discriminator's cross-entropy, which D minimises;
# the paper's Algorithm 1 writes the same quantity with the opposite sign. The decoder minimises
# ``gamma * L_llike - L_GAN`` (``dec_gan_loss_minimax``: it maximises D's error on its samples) or
# the non-saturating ``gamma * L_llike + BCE(D(x_p), 1) [+ BCE(D(x~), 1)]``.


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``L_prior = KL(N(mu, diag exp(logvar)) || N(0, I))``, summed over latent dims, batch mean.

    ``KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``.
    """
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())
    return kl.flatten(1).sum(dim=1).mean()


def feature_gaussian_nll(
    real_features: Tensor, fake_features: Tensor, sigma: float = 1.0
) -> Tensor:
    """``L_llike^{Dis_l}``: Gaussian negative log-likelihood of ``Dis_l(x)`` under
    ``N(Dis_l(x~), sigma^2 I)``, without its constant, summed over features, batch mean.

    ``-log p = 1 / (2 sigma^2) sum_j (Dis_l(x~)_j - Dis_l(x)_j)^2 + const`` (Larsen et al.'s
    official code: ``NLLNormal`` with ``sigma = 1``, summed over the feature map).
    """
    sq = (fake_features - real_features).pow(2).flatten(1).sum(dim=1)
    return sq.mean() / (2.0 * sigma**2)


def feature_mse(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """``mean_{n, j} (Dis_l(x~)_{n,j} - Dis_l(x)_{n,j})^2``: the likelihood term of seed 003
    (mean over batch and features; proportional to the Gaussian NLL for a fixed feature size)."""
    return (fake_features - real_features).pow(2).mean()


def d_loss_vaegan(
    real_logits: Tensor, prior_logits: Tensor, recon_logits: Tensor | None = None
) -> Tensor:
    """``L_GAN`` with three terms, minimised by D: ``BCE(D(x), 1) + BCE(D(Dec(z_p)), 0) +
    BCE(D(Dec(Enc(x))), 0)``, i.e. ``-[log D(x) + log(1 - D(x_p)) + log(1 - D(x~))]``.

    ``recon_logits=None`` leaves the reconstruction term out (the official code's CelebA run).
    """
    loss = bce_real(real_logits) + bce_fake(prior_logits)
    return loss if recon_logits is None else loss + bce_fake(recon_logits)


def dec_gan_loss_minimax(prior_logits: Tensor, recon_logits: Tensor | None = None) -> Tensor:
    """The decoder's adversarial term ``-L_GAN`` (saturating, as the paper and official code):
    ``log(1 - D(x_p)) [+ log(1 - D(x~))] = -softplus(l_p) [- softplus(l~)]``, batch means.

    (``-L_GAN``'s real term does not depend on the decoder and is left out.)
    """
    loss = -bce_fake(prior_logits)
    return loss if recon_logits is None else loss - bce_fake(recon_logits)


def dec_gan_loss_nonsaturating(prior_logits: Tensor, recon_logits: Tensor | None = None) -> Tensor:
    """Non-saturating decoder term: ``BCE(D(x_p), 1) [+ BCE(D(x~), 1)]``, i.e. maximise
    ``log D(x_p) [+ log D(x~)]``."""
    loss = bce_real(prior_logits)
    return loss if recon_logits is None else loss + bce_real(recon_logits)


# --- alpha-GAN (Rosca et al. 2017) ------------------------------------------------------------
#
# Per-network losses (REFERENCE.md section 3, corrected), with R the adversarial term of E and G:
#   E: lambda * |x - G(E(x))|_1 + R(C(E(x)))
#   G: lambda * |x - G(E(x))|_1 + R(D(G(E(x)))) + R(D(G(z)))
#   D: BCE(D(x), 1) + BCE(D(G(E(x))), 0) + BCE(D(G(z)), 0)
#   C: BCE(C(z), 1) + BCE(C(E(x)), 0)          (the PRIOR is real; arXiv v1 swaps the two)


def l1_reconstruction(x: Tensor, x_hat: Tensor) -> Tensor:
    """The paper's ``|x - x_hat|_1``: summed over all but the batch dim, mean over the batch."""
    return (x - x_hat).abs().flatten(1).sum(dim=1).mean()


def l1_reconstruction_mean(x: Tensor, x_hat: Tensor) -> Tensor:
    """``mean |x - x_hat|`` over every element: the L1 norm divided by the number of pixels.

    Seed 000's reconstruction term (its ``lambda = 40`` on CIFAR-10 weighs this mean, which is
    ``|x - x_hat|_1 / (3 * 32 * 32)`` per image).
    """
    return (x - x_hat).abs().mean()


def g_loss_logodds(fake_logits: Tensor) -> Tensor:
    """alpha-GAN's log-odds adversarial term ``R(l) = -log(D / (1 - D)) = -l``, batch mean.

    Used by G on ``D(G(E(x)))`` and ``D(G(z))`` and by E on ``C(E(x))``. Unlike the
    non-saturating ``BCE(l, 1)`` (:func:`g_loss_nonsaturating`) its gradient is -1 per sample
    whatever the logit, so it neither saturates nor vanishes once the fake is accepted.
    """
    return -fake_logits.mean()


def d_loss_alphagan(
    real_logits: Tensor, recon_logits: Tensor, sample_logits: Tensor, fake_weight: float = 1.0
) -> Tensor:
    """Image discriminator loss: ``BCE(D(x), 1) + w [BCE(D(G(E(x))), 0) + BCE(D(G(z)), 0)]``.

    ``w = 1`` is the paper's sum. ``w = 0.5`` is seed 000's ``-log(1 - D(x_fake))`` averaged over
    one pooled fake batch ``x_fake = [G(z); G(E(x))]`` of two equal halves.
    """
    return bce_real(real_logits) + fake_weight * (bce_fake(recon_logits) + bce_fake(sample_logits))


def code_d_loss(prior_logits: Tensor, encoded_logits: Tensor) -> Tensor:
    """Code discriminator loss: ``BCE(C(z), 1) + BCE(C(E(x)), 0)``, ``z`` from the prior.

    The prior's codes are the REAL ones: C learns to tell the prior from the encoder's codes and
    E learns to make its codes look like prior draws. arXiv v1's equations 16-17 swap the two
    labels; the authors confirmed that this is an error.
    """
    return bce_real(prior_logits) + bce_fake(encoded_logits)


def g_loss_wasserstein(fake_scores: Tensor) -> Tensor:
    """WGAN generator (and encoder) loss ``-E[f(fake)]`` for a critic ``f``.

    Numerically the log-odds term :func:`g_loss_logodds` applied to a critic's score.
    """
    return -fake_scores.mean()


def d_loss_alphagan_wasserstein(
    real_scores: Tensor, recon_scores: Tensor, sample_scores: Tensor, fake_weight: float = 0.5
) -> Tensor:
    """WGAN critic loss of seed 000's AlphaWGAN: ``w [E f(G(E(x))) + E f(G(z))] - E f(x)``.

    The fake distribution is the equal mixture of reconstructions and samples, so ``w`` must be
    0.5 (any other weight lets the critic lower its loss without bound by shifting its output).
    Add :func:`gradient_penalty` to it.
    """
    if 2.0 * fake_weight != 1.0:
        raise ValueError(
            f"the Wasserstein critic needs model.fake_weight=0.5 (an equal mixture of "
            f"reconstructions and samples), got {fake_weight}"
        )
    return fake_weight * (recon_scores.mean() + sample_scores.mean()) - real_scores.mean()


def code_d_loss_wasserstein(prior_scores: Tensor, encoded_scores: Tensor) -> Tensor:
    """WGAN code critic loss ``E f(E(x)) - E f(z)``: the prior plays the real distribution."""
    return encoded_scores.mean() - prior_scores.mean()


def gradient_penalty(
    critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_xhat critic(xhat)||_2 - 1)^2]`` on random interpolates.

    ``xhat = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1]`` per sample (Gulrajani et al.
    2017); ``real`` and ``fake`` have the same shape (images or latent codes). The graph is kept
    so the penalty can be back-propagated into the critic.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty needs real and fake of one shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    xhat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(xhat).sum(), xhat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 regulariser ``E ||grad_x D(x)||^2`` on real data (Mescheder et al. 2018, "Which Training
    Methods for GANs do actually Converge?"); D's loss adds ``gamma / 2`` times it.

    ``real`` must require grad and ``real_logits`` be D's logits of it; the graph is kept so the
    penalty can be back-propagated into D.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()
