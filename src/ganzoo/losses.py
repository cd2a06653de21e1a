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


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))``, summed over latent dims, mean over the batch.

    ``KL = -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``.
    """
    kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())
    return kl.flatten(1).sum(dim=1).mean()


# --- alpha-GAN (Rosca et al. 2017) ------------------------------------------------------------


def l1_reconstruction(x: Tensor, x_hat: Tensor) -> Tensor:
    """``|x - x_hat|_1`` per sample (summed over all but the batch dim), mean over the batch."""
    return (x - x_hat).abs().flatten(1).sum(dim=1).mean()


def g_loss_logodds(fake_logits: Tensor) -> Tensor:
    """alpha-GAN's log-odds adversarial term ``R(l) = -log(D / (1 - D)) = -l``, batch mean."""
    return -fake_logits.mean()


def gradient_penalty(critic, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_xhat critic(xhat)||_2 - 1)^2]`` on random interpolates.

    ``xhat = eps * real + (1 - eps) * fake`` with ``eps ~ U[0, 1]`` per sample (Gulrajani et al.
    2017). The graph is kept so the penalty can be back-propagated into the critic.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    xhat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(xhat).sum(), xhat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()
