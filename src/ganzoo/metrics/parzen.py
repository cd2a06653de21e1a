"""Parzen-window log-likelihood, Goodfellow et al. 2014's protocol (REFERENCE.md section 1).

A Gaussian kernel of width ``sigma`` on each of ``M`` generated samples ``mu_i`` gives

    log p(x) = logmeanexp_i(-||x - mu_i||^2 / (2 sigma^2)) - d log(sigma sqrt(2 pi))

in nats, ``d`` the number of dimensions. ``sigma`` is chosen from a grid by the mean
log-likelihood of validation points; the test-set mean is reported with its standard error
``std / sqrt(N)`` (population std, as numpy's default in Goodfellow's ``parzen_ll.py``).

Everything runs in blocks of ``x_chunk`` points against ``centre_chunk`` centres, combining the
blocks with log-sum-exp, so memory stays ``O(num_sigmas * x_chunk * centre_chunk)`` whatever
``N`` and ``M`` are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def goodfellow_sigmas(num: int = 10, low: float = -1.0, high: float = 0.0) -> Tensor:
    """The sigma grid of the protocol: ``logspace(low, high, num)`` = 0.1 ... 1."""
    return torch.logspace(low, high, num, dtype=torch.float64)


@torch.no_grad()
def parzen_log_likelihood(
    x: Tensor,
    centres: Tensor,
    sigmas: Tensor | Iterable[float],
    x_chunk: int = 500,
    centre_chunk: int = 1000,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``log p_sigma(x_n)`` for every sigma and point: shape ``(num_sigmas, N)``, in nats.

    Args:
        x: ``(N, ...)`` points; flattened to ``(N, d)``.
        centres: ``(M, ...)`` kernel centres (generated samples), flattened to ``(M, d)``.
        sigmas: kernel widths.
        x_chunk, centre_chunk: block sizes (bounded memory).
        dtype: computation dtype; float64 keeps ``||x||^2 + ||mu||^2 - 2 x.mu`` exact enough.
    """
    x = x.reshape(x.shape[0], -1)
    centres = centres.reshape(centres.shape[0], -1)
    if x.shape[1] != centres.shape[1]:
        raise ValueError(
            f"points have {x.shape[1]} dimensions but the Parzen centres {centres.shape[1]}"
        )
    if centres.shape[0] == 0:
        raise ValueError("the Parzen window needs at least one centre (generated sample)")
    device = centres.device
    sig = torch.as_tensor(
        list(sigmas) if not isinstance(sigmas, Tensor) else sigmas, dtype=dtype, device=device
    )
    if (sig <= 0).any():
        raise ValueError(f"Parzen sigmas must be positive, got {sig.tolist()}")
    d, m = x.shape[1], centres.shape[0]
    inv_two_var = (1.0 / (2.0 * sig**2))[:, None, None]
    log_norm = math.log(m) + d * torch.log(sig * math.sqrt(2.0 * math.pi))
    out = []
    for i in range(0, x.shape[0], x_chunk):
        xb = x[i : i + x_chunk].to(device=device, dtype=dtype)
        x_sq = (xb * xb).sum(1, keepdim=True)
        acc = torch.full((len(sig), xb.shape[0]), -math.inf, dtype=dtype, device=device)
        for j in range(0, m, centre_chunk):
            cb = centres[j : j + centre_chunk].to(dtype)
            sq = (x_sq + (cb * cb).sum(1)[None, :] - 2.0 * xb @ cb.T).clamp_min_(0.0)
            acc = torch.logaddexp(acc, torch.logsumexp(-sq[None] * inv_two_var, dim=2))
        out.append(acc - log_norm[:, None])
    return torch.cat(out, dim=1)


def select_sigma(val_x: Tensor, centres: Tensor, sigmas: Tensor, **chunks) -> tuple[float, Tensor]:
    """The sigma of ``sigmas`` with the highest mean validation log-likelihood, and all means."""
    means = parzen_log_likelihood(val_x, centres, sigmas, **chunks).mean(dim=1)
    best = int(torch.argmax(means))
    return float(torch.as_tensor(sigmas, dtype=torch.float64)[best]), means


def mean_and_standard_error(values: Tensor) -> tuple[float, float]:
    """Mean and ``std / sqrt(N)`` (population std), as Goodfellow's ``parzen_ll.py`` reports."""
    values = values.double()
    return float(values.mean()), float(values.std(unbiased=False) / math.sqrt(values.numel()))
