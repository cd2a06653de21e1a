"""Samplers on top of a trained model, which change nothing in training: two draw candidates
``x = G(z)`` and throw some away, so that samples unlike the data (a GAN's bridges between modes)
are not returned; one draws ``z`` from a density fit to the encoder's codes instead of from the
prior. Reports say which sampler made their numbers.

- ``DiscriminatorRejection``: DRS (Azadi et al. 2019), kept with a probability D's logit sets.
- ``JacobianTruncation``: JBT (Tanielian et al. 2020), kept where G's Jacobian is small.
- ``LatentTransport``: latent-space DOT (Tanaka 2019), every latent moved by gradient steps
  towards higher D logits, at a transport cost; DRS's candidates can be its samples
  (``DiscriminatorRejection(proposal=LatentTransport(...))``, ``rejection=dot_drs``).
- ``ExPostDensity``: ex-post density estimation (Ghosh et al. 2020), z from a Gaussian mixture
  fit to ``E(x)`` (the encoder families).
- ``Reconstructions``: not a generative sampler but a diagnostic of the encoder families,
  ``G(E(x))`` of training items scored as samples: what the decoder draws at the codes, the
  limit ex-post's samples approach as its mixture tightens around them.

Each is used the same way: ``batches(model, n, batch_size, generator, real=None)`` yields ``n``
samples, ``acceptance`` is the share of its last stream's candidates it kept, and
``settings()`` is its protocol entry.

**Discriminator rejection sampling** (Azadi et al. 2019, "Discriminator Rejection Sampling").
Candidates are kept with a probability that D's logit sets. An optimal D of the standard GAN loss has logit ``log p_data(x) / p_G(x)``, and rejection
sampling with acceptance ``p_data / (M p_G) = exp(logit - max logit)`` would then return exact
data samples. DRS's practical rule, used here:

- **burn-in**: ``logit_max`` is the largest logit over ``burn_in`` candidates, and it keeps
  rising with every larger logit seen later;
- **score**: ``F(x) = logit - logit_max - log(1 - exp(logit - logit_max - epsilon))``, the
  logit of the exact acceptance probability, kept finite near the maximum by ``epsilon``;
- **shift**: ``gamma`` is the ``percentile``-th percentile of ``F`` over each batch of
  candidates, and ``x`` is accepted with probability ``sigmoid(F(x) - gamma)``: higher
  percentiles accept fewer candidates.

D judges what it judged in training: one sample, or with PacGAN's packing a group of ``pack``
samples, which is then kept or dropped as a whole (rejection in the product space returns groups
of independent data samples when D is optimal, so every sample of a kept group is one).

D is only a density-ratio estimate where it was trained with the standard (logistic) GAN loss
against the same generator; for a moving-average generator, for VAE/GAN's and alpha-GAN's D
(trained against reconstructions as well as samples) it is an approximation, and a Wasserstein
critic's scores are no logits at all. Reports say which sampler made their numbers.

**Refinement** (``refine_steps`` > 0, off by default): before the burn-in, a copy of D is
trained further with the logistic loss, training items against the samples of the generator as
it samples (its moving average when enabled), which stays fixed; the copy judges, the model's
own D is left as trained. The rejection rule needs the optimal D of the final generator; the
trained D is that of a generator that kept moving, and for the encoder families it also learned
to tell reconstructions apart.

**Jacobian-based truncation** (Tanielian et al. 2020, "Learning disconnected manifolds: a no
GAN's land"). A continuous G maps the connected latent space onto the whole support of its
samples, so between two disconnected modes of the data it must draw a path of samples, and it
keeps that path's mass small by crossing it fast: the latents of bridge samples are where G
stretches space most, where the Frobenius norm of its Jacobian ``||J_G(z)||_F`` is large. JBT
keeps a latent ``z`` only where that norm is at most a threshold: the ``keep``-quantile of the
norms of ``burn_in`` latents, so that about the share ``keep`` of the prior's draws is kept. It
needs G only (no D), so it applies to every family alike. The norm is exact (one
forward-mode derivative along each latent axis) when the latent has at most ``directions``
dimensions; otherwise ``||J||_F^2 = E ||J u||^2`` over ``u ~ N(0, I)`` is estimated with
``directions`` random ``u``, each drawn from the sampler's stream. The estimate is noisy (ten
directions give each squared norm a relative standard deviation of about sqrt(2 / 10) when
``J``'s singular values are alike), so some latents near the threshold are kept or dropped by
chance; ``directions`` at the latent's size makes the norm exact, at that many passes of G.

**Discriminator optimal transport in latent space** (Tanaka 2019, "Discriminator optimal
transport", Algorithm 2). It rejects nothing: each prior latent ``z_y`` is moved to a minimiser
of ``||z - z_y + delta||_2 - D(G(z)) / k_eff``, ``D`` the logit, by ``steps`` Adam steps from
``z_y``, and ``G`` of the result is the sample. As in the author's code: Adam with betas (0, 0.9),
``delta`` 0.001 (it keeps the norm's gradient finite at ``z = z_y``), 10 steps by default; the
learning rate is an option (0.01 by default). ``k_eff``, D's effective Lipschitz constant
through G, is the largest ``|D(G(z1)) - D(G(z2))| / ||z1 - z2||`` over ``pairs`` pairs of prior
latents drawn once per stream. The paper derives the scheme for a Lipschitz critic (WGAN-GP,
spectral normalisation) whose logit is a transport potential; a D of the logistic loss stands in
for it here, a named deviation. With PacGAN's packing a group of ``pack`` latents moves
together, D judging the group and the cost taken on their concatenation. A bounded (uniform)
prior keeps every latent in its box, each step clipped to it as the author's code clips; for a
normal prior the author's code also keeps the step tangent to the sphere of radius
``sqrt(dim)``, which ganzoo does not do (its 2D latents have no such shell).

**DOT, then DRS** (``rejection=dot_drs``; ganzoo's combination, in neither paper). The two
mend different faults: DOT moves samples that lie off the modes onto them but cannot change how
much mass each mode gets, while DRS's acceptance, ``exp(logit - max logit)`` for an optimal D,
is a density-ratio correction that raises the share of modes G under-weights. DRS's
candidates are then DOT's samples and its rule is applied unchanged (burn-in, ``F``,
percentile), with D's logit read as the ratio of the data's density to that of the transported
samples, which D was not trained against: an approximation on top of DRS's own.

**Ex-post density estimation** (Ghosh et al. 2020, "From Variational to Deterministic
Autoencoders"). An encoder's codes ``E(x)`` of the training data need not fill the
prior: where the prior has mass and no code lies, G was never asked to draw data, and those
latents decode to samples off the data (a VAE's "holes"). Ghosh et al. fit a density to the codes
after training, in their code a Gaussian mixture of 10 full-covariance components fit by
scikit-learn's EM (at most 2,000 iterations, tolerance 1e-3; also 1 to 200 components as
options), and sample latents from it; here the components may also be chosen among several by
BIC. The codes are deterministic
(VAE/GAN's posterior mean, alpha-GAN's ``E(x)``), of ``fit_items`` training items drawn with
replacement (``None``: every training item once, as in their code), and the fit
is scikit-learn's EM; the latents are then drawn with the sampler's stream. Decoded mixture
samples lie close to reconstructions: where G reconstructs tighter than the data spread (read
``hq_std`` on the toy mixtures) the samples are as tight.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ganzoo.models.base import GenerativeModel


def rebatched(chunks: Iterator[Tensor], n: int, batch_size: int) -> Iterator[Tensor]:
    """The first ``n`` rows of the tensors ``chunks`` yields, in batches of ``batch_size`` (the
    last smaller); no chunk is drawn once ``n`` rows are out."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    kept: list[Tensor] = []
    held = 0
    if n <= 0:
        return
    for chunk in chunks:
        kept.append(chunk)
        held += len(chunk)
        while held >= min(batch_size, n):
            pool = torch.cat(kept)
            take = min(batch_size, n)
            yield pool[:take]
            kept, held, n = [pool[take:]], len(pool) - take, n - take
            if n == 0:
                return


def random_items(dataset: Any, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` items of ``dataset`` drawn uniformly with replacement, stacked (the training data a
    refinement of D reads)."""
    device = generator.device if generator is not None else None
    index = torch.randint(len(dataset), (k,), generator=generator, device=device)
    return torch.stack([GenerativeModel.inputs(dataset[i]) for i in index.tolist()])


class TrainingItems:
    """The training items a sampler reads: called as ``items(k, generator)``, ``k`` items drawn
    uniformly with replacement (:func:`random_items`); :meth:`every` gives each item once, in
    order. Items land on ``device``."""

    def __init__(self, dataset: Any, device: torch.device | str | None = None):
        self.dataset = dataset
        self.device = device

    def __call__(self, k: int, generator: torch.Generator | None) -> Tensor:
        return random_items(self.dataset, k, generator).to(self.device)

    def every(self, batch_size: int) -> Iterator[Tensor]:
        """Every item once, in order, in batches of ``batch_size``."""
        for start in range(0, len(self.dataset), batch_size):
            stop = min(start + batch_size, len(self.dataset))
            items = [GenerativeModel.inputs(self.dataset[i]) for i in range(start, stop)]
            yield torch.stack(items).to(self.device)


def weights_version(model: Any) -> tuple[int, ...]:
    """The in-place update counts of ``model``'s parameters: they change with every optimizer
    step or ``load_state_dict``, so a fit cached under them is that of the same weights."""
    parameters = model.parameters() if hasattr(model, "parameters") else ()
    return tuple(p._version for p in parameters)


class Sampler:
    """What every sampler shares: the last stream's counts (``drawn`` candidates after any
    burn-in, ``kept`` of them) and their ratio."""

    def __init__(self) -> None:
        self.drawn = 0
        self.kept = 0

    @property
    def acceptance(self) -> float | None:
        """Share of the last stream's candidates (after the burn-in) that were kept."""
        return self.kept / self.drawn if self.drawn else None

    def measured(self) -> dict[str, Any]:
        """Values the last stream measured on the model (a threshold, a fit's choice): recorded
        beside the numbers, kept out of ``settings()``, which must be alike across models."""
        return {}


class RejectionSampler(Sampler):
    """A sampler that throws candidates away: the burn-in's size and the limit on candidates."""

    def __init__(self, burn_in: int, max_candidates: int):
        super().__init__()
        if burn_in < 1:
            raise ValueError(f"rejection.burn_in must be >= 1, got {burn_in}")
        if max_candidates < 1:
            raise ValueError(f"rejection.max_candidates must be >= 1, got {max_candidates}")
        self.burn_in = int(burn_in)
        self.max_candidates = int(max_candidates)


class DiscriminatorRejection(RejectionSampler):
    """DRS as a sampler of any family with a discriminator (``GenerativeModel.realness``).

    Args:
        burn_in: candidates whose largest logit starts ``logit_max``.
        percentile: percentile (0-100) of ``F`` over each batch of candidates taken as
            ``gamma``; higher keeps fewer.
        epsilon: DRS's ``epsilon`` in ``F``, keeping it finite at the maximum logit.
        max_candidates: most candidates drawn per requested sample before giving up.
        refine_steps: Adam steps training a copy of D against the fixed generator before the
            burn-in (0: D as trained).
        refine_lr: that Adam's learning rate (betas 0.5, 0.999).
        refine_batch_size: training items and samples per refinement step (rounded up to whole
            groups).
        proposal: where candidates come from: None, ``model.sample`` (DRS); a
            ``LatentTransport``, its transported samples (DOT's samples, then DRS's rule).
        transport: a ``LatentTransport`` that moves the latents of the kept candidates (DRS's
            rule on the model's own samples, then DOT on what it kept), or None (DRS). Not with
            ``proposal``.
    """

    def __init__(
        self,
        burn_in: int = 10_000,
        percentile: float = 95.0,
        epsilon: float = 1e-6,
        max_candidates: int = 1_000,
        refine_steps: int = 0,
        refine_lr: float = 1e-4,
        refine_batch_size: int = 100,
        proposal: LatentTransport | None = None,
        transport: LatentTransport | None = None,
    ):
        super().__init__(burn_in, max_candidates)
        if proposal is not None and transport is not None:
            raise ValueError(
                "rejection.proposal (DOT, then DRS) and rejection.transport (DRS, then DOT) "
                "exclude each other: set one of them to null"
            )
        self.proposal = proposal
        self.transport = transport
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"rejection.percentile must be in [0, 100], got {percentile}")
        if epsilon <= 0:
            raise ValueError(f"rejection.epsilon must be > 0, got {epsilon}")
        if refine_steps < 0:
            raise ValueError(f"rejection.refine_steps must be >= 0, got {refine_steps}")
        if refine_lr <= 0 or refine_batch_size < 1:
            raise ValueError(
                "rejection.refine_lr must be > 0 and rejection.refine_batch_size >= 1, got "
                f"{refine_lr} and {refine_batch_size}"
            )
        self.refine_steps = int(refine_steps)
        self.refine_lr = float(refine_lr)
        self.refine_batch_size = int(refine_batch_size)
        self.percentile = float(percentile)
        self.epsilon = float(epsilon)
        #: Of the last stream: candidates per batch, over which ``gamma`` is taken.
        self.candidates_per_batch: int | None = None

    def settings(self) -> dict[str, Any]:
        """The protocol entry: DRS's settings (``candidates_per_batch``, which sets the sample
        ``gamma`` is a percentile of, once a stream has run: the evaluation's batch size rounded up
        to whole groups)."""
        method = "discriminator rejection sampling (Azadi et al. 2019)"
        if self.proposal is not None:
            method += " of discriminator optimal transport's samples (Tanaka 2019)"
        if self.transport is not None:
            method += ", then discriminator optimal transport of the kept latents (Tanaka 2019)"
        return (
            {
                "method": method,
                "burn_in": self.burn_in,
                "percentile": self.percentile,
                "epsilon": self.epsilon,
                "max_candidates": self.max_candidates,
                "candidates_per_batch": self.candidates_per_batch,
                "refine_steps": self.refine_steps,
                "refine_lr": self.refine_lr if self.refine_steps else None,
                "refine_batch_size": self.refine_batch_size if self.refine_steps else None,
            }
            | ({"proposal": self.proposal.settings()} if self.proposal is not None else {})
            | ({"transport": self.transport.settings()} if self.transport is not None else {})
        )

    def measured(self) -> dict[str, Any]:
        """The ``k_eff`` and distance moved of a ``LatentTransport`` proposal or transport."""
        dot = self.proposal or self.transport
        return dot.measured() if dot is not None else {}

    def score(self, logits: Tensor, logit_max: Tensor) -> Tensor:
        """DRS's ``F``: ``logit - logit_max - log(1 - exp(logit - logit_max - epsilon))``."""
        shifted = logits - logit_max
        return shifted - torch.log(-torch.expm1(shifted - self.epsilon))

    def keep_probability(self, logits: Tensor, logit_max: Tensor) -> Tensor:
        """Each candidate's probability of being kept: ``sigmoid(F - gamma)``, ``gamma`` the
        ``percentile``-th percentile of ``F`` over ``logits``."""
        f = self.score(logits, logit_max)
        gamma = torch.quantile(f, self.percentile / 100.0)
        return torch.sigmoid(f - gamma)

    def refined(
        self,
        model: Any,
        real: Callable[[int, torch.Generator | None], Tensor],
        generator: torch.Generator | None = None,
    ) -> Any:
        """A copy of ``model`` whose D has taken ``refine_steps`` logistic-loss steps, ``real``
        items (``real(k, generator)``: ``k`` random training items) against ``model``'s samples."""
        model.judging_network()  # before the copy: a family without D is refused here
        judge = copy.deepcopy(model)
        d = judge.judging_network()
        group = int(getattr(model, "judged_together", 1))
        size = -(-self.refine_batch_size // group) * group
        d.train()
        opt = torch.optim.Adam(d.parameters(), lr=self.refine_lr, betas=(0.5, 0.999))
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        for _ in range(self.refine_steps):
            with torch.no_grad():
                fake = model.sample(size, generator=generator)
            real_logits = judge.judge(real(size, generator).to(fake.device))
            fake_logits = judge.judge(fake)
            loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
                fake_logits, torch.zeros_like(fake_logits)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        d.eval()
        return judge

    @torch.no_grad()
    def _candidates(
        self, model: Any, judge: Any, size: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``size`` candidates of ``model`` (a multiple of D's group; from the proposal when
        there is one), ``judge``'s logit per group, and the candidates' latents with a
        transport (else None)."""
        z = None
        if self.proposal is not None:
            x = self.proposal.draw(model, size, generator)
        elif self.transport is not None:
            z = model.prior.sample(size, generator=generator)
            x = model.generate(z)
        else:
            x = model.sample(size, generator=generator)
        logits = judge.realness(x).reshape(-1).float()
        return x, logits, z

    def batches(
        self,
        model: Any,
        n: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        real: Callable[[int, torch.Generator | None], Tensor] | None = None,
    ) -> Iterator[Tensor]:
        """``n`` accepted samples of ``model`` in batches of ``batch_size`` (the last smaller),
        drawn with ``generator`` (its stream: the refinement, the proposal's ``k_eff`` pairs, the
        burn-in, then candidates and uniforms); ``real(k, generator)`` gives ``k`` random
        training items, needed to refine."""
        if not callable(getattr(model, "realness", None)):
            raise ValueError(
                f"{type(model).__name__} has no discriminator to reject with: evaluate it "
                "without rejection (drop rejection=...)"
            )
        judge = model
        if self.refine_steps:
            if real is None:
                raise ValueError(
                    "rejection.refine_steps needs training data, which this caller does not "
                    "give: set rejection.refine_steps=0"
                )
            with torch.enable_grad():
                judge = self.refined(model, real, generator)
        if self.proposal is not None:
            self.proposal.prepare(model, generator)  # transports along the model's own D
        if self.transport is not None:
            self.transport.prepare(model, generator)
        yield from self._accepted(model, judge, n, batch_size, generator)

    @torch.no_grad()
    def _accepted(
        self, model: Any, judge: Any, n: int, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[Tensor]:
        group = int(getattr(model, "judged_together", 1))
        size = -(-max(batch_size, group) // group) * group
        self.candidates_per_batch = size
        logit_max = torch.tensor(-torch.inf, device=model.device)
        for start in range(0, self.burn_in, size):  # whole groups: the last may run over
            left = -(-(self.burn_in - start) // group) * group
            _, logits, _ = self._candidates(model, judge, min(size, left), generator)
            logit_max = torch.maximum(logit_max, logits.max())
        self.drawn = self.kept = 0

        def accepted() -> Iterator[Tensor]:
            nonlocal logit_max
            while True:
                if self.drawn >= self.max_candidates * n:
                    raise RuntimeError(
                        f"discriminator rejection kept {self.kept} of {self.drawn} candidates: "
                        "lower rejection.percentile to keep more"
                    )
                x, logits, z = self._candidates(model, judge, size, generator)
                logit_max = torch.maximum(logit_max, logits.max())
                p = self.keep_probability(logits, logit_max)
                u = torch.rand(p.shape, generator=generator, device=p.device)
                keep = u < p
                groups = x.reshape(len(logits), group, *x.shape[1:])[keep]
                self.drawn += len(x)
                self.kept += len(groups) * group
                if z is not None and self.transport is not None:
                    kept_z = z.reshape(len(logits), group, *z.shape[1:])[keep]
                    yield self.transport.carry(model, kept_z.reshape(-1, *z.shape[1:]))
                    continue
                yield groups.reshape(-1, *x.shape[1:])

        yield from rebatched(accepted(), n, batch_size)


class JacobianTruncation(RejectionSampler):
    """JBT (Tanielian et al. 2020) as a sampler of any family: ``G(z)`` kept where
    ``||J_G(z)||_F`` is at most the ``keep``-quantile of the norms over ``burn_in`` latents.

    Args:
        keep: share (0-1] of the prior's latents kept, which sets the threshold; lower keeps
            fewer, the ones where G stretches space least.
        burn_in: latents whose norms set the threshold, fixed for the stream.
        directions: the norm is exact when the latent has at most this many dimensions, else
            estimated from this many random directions per latent.
        max_candidates: most candidates drawn per requested sample before giving up.
    """

    def __init__(
        self,
        keep: float = 0.9,
        burn_in: int = 10_000,
        directions: int = 10,
        max_candidates: int = 1_000,
    ):
        super().__init__(burn_in, max_candidates)
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"rejection.keep must be in (0, 1], got {keep}")
        if directions < 1:
            raise ValueError(f"rejection.directions must be >= 1, got {directions}")
        self.keep = float(keep)
        self.directions = int(directions)
        #: Of the last stream: the norm a latent's Jacobian may have at most, and whether the
        #: norms were exact.
        self.threshold: float | None = None
        self.exact: bool | None = None

    def settings(self) -> dict[str, Any]:
        """The protocol entry: JBT's settings and, once a stream has run, whether its norms were
        exact (the threshold, a measured value of each model, is ``threshold``)."""
        return {
            "method": "Jacobian-based truncation (Tanielian et al. 2020)",
            "keep": self.keep,
            "burn_in": self.burn_in,
            "directions": self.directions,
            "exact_norm": self.exact,
            "max_candidates": self.max_candidates,
        }

    def measured(self) -> dict[str, Any]:
        """The last stream's threshold on the Jacobian's norm."""
        return {"threshold": self.threshold}

    def jacobian_norms(
        self, model: Any, z: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(G(z), ||J_G(z)||_F)`` per latent, by forward-mode derivatives of
        ``model.generate``: along every latent axis when there are at most ``directions``
        (exact), else along ``directions`` random ``u ~ N(0, I)`` (``||J||_F^2 = E ||J u||^2``)."""
        dim = z[0].numel()
        exact = dim <= self.directions
        squared = torch.zeros(len(z), device=z.device)
        x = None
        for k in range(dim if exact else self.directions):
            if exact:
                u = torch.zeros_like(z).flatten(1)
                u[:, k] = 1.0
                u = u.reshape(z.shape)
            else:
                u = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            x, ju = torch.func.jvp(model.generate, (z,), (u,))
            squared += ju.flatten(1).float().pow(2).sum(dim=1)
        if not exact:
            squared /= self.directions
        return x, squared.sqrt()

    def batches(
        self,
        model: Any,
        n: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        real: Callable[[int, torch.Generator | None], Tensor] | None = None,
    ) -> Iterator[Tensor]:
        """``n`` kept samples of ``model`` in batches of ``batch_size`` (the last smaller),
        drawn with ``generator`` (its stream: the burn-in's latents and directions, then the
        candidates'); ``real`` is not read (JBT needs no data). ``model`` must be in eval mode:
        G's Jacobian is that of the function that samples, one latent at a time."""
        if getattr(model, "training", False):
            raise ValueError(
                "Jacobian truncation needs the model in eval mode (model.eval()): in training "
                "mode BatchNorm and dropout make G's output depend on the batch and on chance"
            )
        self.exact = model.prior.dim <= self.directions
        yield from self._kept(model, n, batch_size, generator)

    @torch.no_grad()
    def _kept(
        self, model: Any, n: int, batch_size: int, generator: torch.Generator | None
    ) -> Iterator[Tensor]:
        size = max(1, batch_size)
        norms = []
        for start in range(0, self.burn_in, size):
            z = model.prior.sample(min(size, self.burn_in - start), generator=generator)
            norms.append(self.jacobian_norms(model, z, generator)[1])
        threshold = torch.quantile(torch.cat(norms), self.keep)
        self.threshold = threshold.item()
        self.drawn = self.kept = 0

        def kept() -> Iterator[Tensor]:
            while True:
                if self.drawn >= self.max_candidates * n:
                    raise RuntimeError(
                        f"Jacobian truncation kept {self.kept} of {self.drawn} candidates: "
                        "raise rejection.keep to keep more"
                    )
                z = model.prior.sample(size, generator=generator)
                x, norm = self.jacobian_norms(model, z, generator)
                x = x[norm <= threshold]
                self.drawn += size
                self.kept += len(x)
                yield x

        yield from rebatched(kept(), n, batch_size)


class LatentTransport(Sampler):
    """Latent-space DOT (Tanaka 2019) as a sampler of any family with a discriminator: each
    prior latent moved by ``steps`` Adam steps on ``||z - z_y + delta|| - D(G(z)) / k_eff``.

    Args:
        steps: Adam steps per latent (0 returns the prior's samples).
        lr: Adam's learning rate.
        betas: Adam's betas.
        delta: added to ``z - z_y`` inside the norm, keeping its gradient finite at ``z_y``.
        pairs: pairs of prior latents (groups with packing) whose largest ratio is ``k_eff``.
    """

    def __init__(
        self,
        steps: int = 10,
        lr: float = 0.01,
        betas: Sequence[float] = (0.0, 0.9),
        delta: float = 1e-3,
        pairs: int = 100,
    ):
        super().__init__()
        if steps < 0:
            raise ValueError(f"rejection.steps must be >= 0, got {steps}")
        if lr <= 0 or delta < 0:
            raise ValueError(
                f"rejection.lr must be > 0 and rejection.delta >= 0, got {lr}, {delta}"
            )
        if pairs < 1:
            raise ValueError(f"rejection.pairs must be >= 1, got {pairs}")
        self.steps, self.lr, self.delta, self.pairs = (
            int(steps),
            float(lr),
            float(delta),
            int(pairs),
        )
        self.betas = (float(betas[0]), float(betas[1]))
        #: Of the last stream: D's effective Lipschitz constant, and the mean distance latents
        #: moved (per group of ``judged_together``).
        self.k_eff: float | None = None
        self.moved: float | None = None
        self._group, self._total_moved = 1, 0.0

    def settings(self) -> dict[str, Any]:
        """The protocol entry: DOT's settings (``k_eff``, measured on each model, is in
        ``measured()``)."""
        return {
            "method": "discriminator optimal transport in latent space (Tanaka 2019)",
            "steps": self.steps,
            "lr": self.lr,
            "betas": list(self.betas),
            "delta": self.delta,
            "pairs": self.pairs,
        }

    def measured(self) -> dict[str, Any]:
        """The last stream's ``k_eff`` and mean distance moved per latent group."""
        return {"k_eff": self.k_eff, "moved": self.moved}

    @staticmethod
    def _grouped(z: Tensor, group: int) -> Tensor:
        """Latents as one row per group of ``group`` (the vectors D's logit is a function of)."""
        return z.reshape(len(z) // group, -1)

    @torch.no_grad()
    def effective_lipschitz(
        self, model: Any, group: int, generator: torch.Generator | None = None
    ) -> float:
        """``max |D(G(z1)) - D(G(z2))| / ||z1 - z2||`` over ``pairs`` pairs of prior latents."""
        z1 = model.prior.sample(self.pairs * group, generator=generator)
        z2 = model.prior.sample(self.pairs * group, generator=generator)
        d1, d2 = model.realness(model.generate(z1)), model.realness(model.generate(z2))
        dz = (self._grouped(z1, group) - self._grouped(z2, group)).norm(dim=1)
        return ((d1 - d2).abs() / dz).max().item()

    def transport(self, model: Any, z_y: Tensor, k_eff: float, group: int) -> Tensor:
        """The latents ``z_y`` after ``steps`` Adam steps (one optimiser for the batch; each
        latent's loss depends on its own group only, Adam's steps are elementwise)."""
        z = z_y.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr, betas=self.betas)
        low, high = getattr(model.prior, "low", None), getattr(model.prior, "high", None)
        for _ in range(self.steps):
            with torch.enable_grad():
                cost = self._grouped(z - z_y + self.delta, group).norm(dim=1)
                loss = (cost - model.judge(model.generate(z)) / k_eff).sum()
                (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
            if low is not None and high is not None:
                with torch.no_grad():
                    z.clamp_(low, high)
        return z.detach()

    def prepare(self, model: Any, generator: torch.Generator | None = None) -> int:
        """Start a stream: check ``model`` and measure ``k_eff`` on its ``pairs`` (the stream's
        first draws from ``generator``); returns D's group (``judged_together``). ``model``
        must be in eval mode: the potential is D's logit of one sample (group) at a time."""
        if getattr(model, "training", False):
            raise ValueError(
                "discriminator optimal transport needs the model in eval mode (model.eval()): "
                "in training mode BatchNorm and dropout make D's logit depend on the batch"
            )
        model.judging_network()  # a family without D is refused here
        group = int(getattr(model, "judged_together", 1))
        k_eff = self.effective_lipschitz(model, group, generator)
        if not k_eff > 0:
            raise RuntimeError(
                f"D's logit is constant over {self.pairs} pairs of samples (k_eff {k_eff}): "
                "there is nothing to transport along; evaluate without rejection=dot (or dot_drs)"
            )
        self.k_eff = k_eff
        self.drawn = self.kept = 0
        self._group, self._total_moved = group, 0.0
        return group

    def draw(self, model: Any, size: int, generator: torch.Generator | None = None) -> Tensor:
        """``size`` samples (whole groups) of the stream ``prepare`` started: prior latents
        from ``generator``, transported."""
        return self.carry(model, model.prior.sample(size, generator=generator))

    def carry(self, model: Any, z_y: Tensor) -> Tensor:
        """The samples of the latents ``z_y`` (whole groups) after transport, in the stream
        ``prepare`` started."""
        if self.k_eff is None:
            raise RuntimeError("LatentTransport.carry before prepare: no k_eff measured")
        size = len(z_y)
        if size == 0:
            with torch.no_grad():
                return model.generate(z_y)
        z = self.transport(model, z_y, self.k_eff, self._group)
        distances = self._grouped(z - z_y, self._group).norm(dim=1)
        self._total_moved += distances.sum().item()
        self.moved = self._total_moved / (self.drawn // self._group + len(distances))
        self.drawn += size
        self.kept += size
        with torch.no_grad():
            return model.generate(z)

    def batches(
        self,
        model: Any,
        n: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        real: Callable[[int, torch.Generator | None], Tensor] | None = None,
    ) -> Iterator[Tensor]:
        """``n`` samples of ``model`` in batches of ``batch_size`` (the last smaller; rounded up
        to whole groups with packing), drawn with ``generator`` (its stream: the ``k_eff``
        pairs, then each batch's latents); ``real`` is not read. ``model`` must be in eval
        mode (``prepare``)."""
        group = self.prepare(model, generator)
        size = -(-max(batch_size, group) // group) * group

        def transported() -> Iterator[Tensor]:
            while True:
                yield self.draw(model, size, generator)

        yield from rebatched(transported(), n, batch_size)


class CodeSampler(Sampler):
    """A sampler that reads the encoder's codes ``E(x)`` of training items (VAE/GAN, alpha-GAN):
    its stream needs the training data and the model in eval mode."""

    #: The sampler, as its errors name it.
    name = "a code sampler"

    def batches(
        self,
        model: Any,
        n: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        real: Callable[[int, torch.Generator | None], Tensor] | None = None,
    ) -> Iterator[Tensor]:
        """``n`` samples of ``model`` in batches of ``batch_size`` (the last smaller), drawn with
        ``generator``; ``real(k, generator)`` gives the training items. ``model`` must be in
        eval mode: the codes are those of the encoder that reconstructs."""
        if real is None:
            raise ValueError(f"{self.name} needs the training data to encode")
        if getattr(model, "training", False):
            raise ValueError(
                f"{self.name} needs the model in eval mode (model.eval()): in training mode "
                "BatchNorm and dropout make E's codes depend on the batch"
            )
        self.drawn = self.kept = 0
        yield from rebatched(self.chunks(model, max(1, batch_size), generator, real), n, batch_size)

    def chunks(
        self, model: Any, size: int, generator: torch.Generator | None, real: Callable
    ) -> Iterator[Tensor]:
        """Samples ``size`` at a time, without end, counted in ``drawn`` and ``kept``."""
        raise NotImplementedError

    def encode(self, model: Any, x: Tensor) -> Tensor:
        """``model``'s codes of ``x``; one line naming the family where it has no encoder."""
        try:
            return model.encode(x)
        except NotImplementedError as err:
            raise ValueError(
                f"{self.name} reads the codes of an encoder and the {type(model).__name__} "
                "family has none: use rejection=drs or rejection=jbt, which sample any family"
            ) from err


class ExPostDensity(CodeSampler):
    """Ex-post density estimation (Ghosh et al. 2020) as a sampler of the encoder families:
    ``G(z)`` with ``z`` drawn from a Gaussian mixture fit to the codes ``E(x)`` of training
    items instead of from the prior.

    Args:
        components: the mixture's number of components; a list is a choice among them, made by
            ``select`` (the data choose, not the number of modes one knows).
        select: how a list of ``components`` is chosen among: ``bic``, the fit to every code of
            least BIC (Schwarz's criterion: the fit's log-likelihood against its number of
            parameters); ``held_out``, the fit to all but a random ``held_out`` share of the
            codes that gives the codes it did not see the most likelihood (the fit kept).
        held_out: the share of the codes ``select=held_out`` keeps out of the fits.
        fit_items: training items drawn (uniformly, with replacement) and encoded for the fit;
            ``None`` encodes every training item once, as the official code does (the data
            must come as :class:`TrainingItems`).
        covariance: ``full`` or ``diag`` covariance per component.
        max_iter: most EM iterations per fit (scikit-learn's ``GaussianMixture``).
        tol: EM stops when the lower bound's gain per iteration falls below this.
        reg_covar: added to each covariance's diagonal, keeping it positive definite; a list
            is a choice among them, made by ``select`` with ``components`` (every pair fit).
        temperature: each latent is ``mean + temperature * scale @ noise`` of its component:
            1 samples the fitted mixture; below 1 is reduced-temperature sampling (Kingma and
            Dhariwal 2018's Glow samples its prior so; the truncation trick's trade of recall
            for precision, Brock et al. 2019), a named deviation from Ghosh et al.
    """

    name = "ex-post density estimation"

    def __init__(
        self,
        components: int | Sequence[int] = 10,
        fit_items: int | None = 20_000,
        covariance: str = "full",
        max_iter: int = 2_000,
        tol: float = 1e-3,
        reg_covar: float | Sequence[float] = 1e-6,
        select: str = "bic",
        held_out: float = 0.1,
        temperature: float = 1.0,
    ):
        super().__init__()
        choices = [components] if isinstance(components, int) else components
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Iterable):
            choices = None
        else:
            choices = list(choices)
        if not choices or any(
            not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in choices
        ):
            raise ValueError(
                "rejection.components must be a positive integer or a list of them "
                f"(e.g. [1,2,5,10,20]), got {components!r}"
            )
        if fit_items is not None and (
            not isinstance(fit_items, int) or isinstance(fit_items, bool) or fit_items < 2
        ):
            raise ValueError(
                f"rejection.fit_items must be an integer >= 2, or null for every training "
                f"item, got {fit_items!r}"
            )
        if fit_items is not None and max(choices) > fit_items:
            raise ValueError(
                f"rejection.components asks for up to {max(choices)} components from "
                f"rejection.fit_items={fit_items} codes: raise rejection.fit_items"
            )
        if covariance not in ("full", "diag"):
            raise ValueError(f"rejection.covariance must be full or diag, got {covariance!r}")
        if max_iter < 1:
            raise ValueError(f"rejection.max_iter must be >= 1, got {max_iter}")
        if tol <= 0:
            raise ValueError(f"rejection.tol must be > 0, got {tol}")
        regs = [reg_covar] if isinstance(reg_covar, (int, float)) else reg_covar
        if isinstance(regs, (str, bytes)) or not isinstance(regs, Iterable):
            regs = None
        else:
            regs = list(regs)
        if not regs or any(
            not isinstance(r, (int, float)) or isinstance(r, bool) or r < 0 for r in regs
        ):
            raise ValueError(
                "rejection.reg_covar must be a number >= 0 or a list of them "
                f"(e.g. [1e-6,0.01]), got {reg_covar!r}"
            )
        if select not in ("bic", "held_out"):
            raise ValueError(f"rejection.select must be bic or held_out, got {select!r}")
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"rejection.held_out must be a share in (0, 1), got {held_out}")
        if not temperature > 0:
            raise ValueError(f"rejection.temperature must be > 0, got {temperature}")
        self.choices = sorted(set(choices))
        self.fit_items = fit_items
        self.covariance = covariance
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.reg_choices = sorted({float(r) for r in regs})
        self.select = select
        self.held_out = float(held_out)
        self.temperature = float(temperature)
        #: Of the last stream: the codes encoded, the components (and ``reg_covar``) the fit
        #: kept, and per choice the BIC (``select=bic``) or the held-out codes' mean
        #: log-likelihood (``held_out``), keyed by components, or by ``"<components>,
        #: <reg_covar>"`` where ``reg_covar`` is a choice too.
        self.codes_fit: int | None = None
        self.components: int | None = None
        self.reg_covar: float | None = None
        self.bic: dict[Any, float] | None = None
        self.held_out_ll: dict[Any, float] | None = None
        # The last fit, with the generator's state before and after it: a stream that starts
        # from the same state (every metric of one evaluation) reuses it, exactly.
        self._cached: tuple[Any, ...] | None = None

    def settings(self) -> dict[str, Any]:
        """The protocol entry: the fit's settings (the components it chose are ``measured()``,
        a value of each model)."""
        return {
            "method": "ex-post density estimation (Ghosh et al. 2020), a Gaussian mixture on E(x)",
            "components": self.choices[0] if len(self.choices) == 1 else None,
            "choices": self.choices,
            "fit_items": self.fit_items,
            "covariance": self.covariance,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "reg_covar": self.reg_choices[0] if len(self.reg_choices) == 1 else self.reg_choices,
            "select": self.select,
            "held_out": self.held_out if self.select == "held_out" else None,
            "temperature": self.temperature,
        }

    def measured(self) -> dict[str, Any]:
        """What the last stream's fit chose: its components and ``reg_covar``, the BIC (or the
        held-out codes' mean log-likelihood) of every choice, and how many codes were encoded
        for it."""
        return {
            "components": self.components,
            "reg_covar": self.reg_covar,
            "bic": self.bic,
            "held_out_ll": self.held_out_ll,
            "codes": self.codes_fit,
        }

    def codes(
        self, model: Any, real: Callable, n: int | None, batch_size: int, generator
    ) -> tuple[Tensor, torch.Size]:
        """``E(x)`` of ``n`` training items drawn in batches of ``batch_size`` (``n=None``:
        every item of ``real``, a :class:`TrainingItems`, once), flattened to ``(items,
        latent)``, and the shape of one code."""
        size = max(1, batch_size)
        if n is None:
            if not callable(getattr(real, "every", None)):
                raise ValueError(
                    "rejection.fit_items=null encodes every training item, which this caller "
                    "does not give: set rejection.fit_items to a number"
                )
            batches = real.every(size)
        else:
            batches = (real(min(size, n - start), generator) for start in range(0, n, size))
        codes = [self.encode(model, x) for x in batches]
        codes_flat = torch.cat(codes).flatten(1)
        if len(codes_flat) < max(self.choices):
            raise ValueError(
                f"rejection.components asks for up to {max(self.choices)} components from "
                f"{len(codes_flat)} training codes: lower rejection.components"
            )
        self.codes_fit = len(codes_flat)
        return codes_flat, codes[0].shape[1:]

    def fit(self, codes: Tensor, seed: int) -> Any:
        """The mixture ``select`` chooses among ``choices`` x ``reg_choices``, fit to ``codes``
        (EM from k-means, seeded with ``seed``; ``held_out`` also draws its held-out codes with
        it)."""
        try:
            from sklearn.mixture import GaussianMixture
        except ImportError as err:
            raise ImportError(
                "rejection=expost fits its mixture with scikit-learn: pip install 'ganzoo[expost]'"
            ) from err
        data = codes.double().cpu().numpy()
        candidates = [(k, r) for k in self.choices for r in self.reg_choices]
        on_held_out = self.select == "held_out" and len(candidates) > 1
        if on_held_out:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
            n_held = max(1, round(len(data) * self.held_out))
            held, data = data[order[:n_held].numpy()], data[order[n_held:].numpy()]
            if len(data) < max(self.choices):
                raise ValueError(
                    f"rejection.components asks for up to {max(self.choices)} components from "
                    f"{len(data)} codes left to fit beside the held-out ones: lower "
                    "rejection.components or rejection.held_out"
                )
        fits = {
            (k, r): GaussianMixture(
                k,
                covariance_type=self.covariance,
                max_iter=self.max_iter,
                tol=self.tol,
                reg_covar=r,
                random_state=seed,
            ).fit(data)
            for k, r in candidates
        }
        if on_held_out:
            scores = {c: float(gm.score(held)) for c, gm in fits.items()}
            best = max(scores, key=scores.get)
        else:
            scores = {c: float(gm.bic(data)) for c, gm in fits.items()}
            best = min(scores, key=scores.get)
        keyed = {self._key(*c): v for c, v in scores.items()}
        self.bic, self.held_out_ll = (None, keyed) if on_held_out else (keyed, None)
        self.components, self.reg_covar = best
        return fits[best]

    def _key(self, components: int, reg_covar: float) -> int | str:
        """A choice's key in ``bic`` and ``held_out_ll``."""
        return components if len(self.reg_choices) == 1 else f"{components}, {reg_covar:g}"

    def _mixture(
        self, model: Any, batch_size: int, generator: torch.Generator | None, real: Callable
    ) -> tuple[Tensor, Tensor, Tensor, torch.Size, torch.device]:
        """The fit as tensors: weights, means, scales (Cholesky factors, or standard deviations
        for ``diag``), the code shape and the codes' device; from the cache when the generator
        starts where it started for the cached fit."""
        before = generator.get_state() if generator is not None else None
        if self._cached is not None and before is not None:
            key, after, tensors, measured = self._cached
            same_weights = key[0] is model and key[1] == weights_version(model)
            if same_weights and torch.equal(key[2], before):
                generator.set_state(after)
                (self.components, self.reg_covar, self.bic, self.held_out_ll, self.codes_fit) = (
                    measured
                )
                return tensors
        codes, code_shape = self.codes(model, real, self.fit_items, batch_size, generator)
        device = generator.device if generator is not None else codes.device
        seed = int(torch.randint(2**31 - 1, (), generator=generator, device=device))
        mixture = self.fit(codes, seed)
        weights = torch.as_tensor(mixture.weights_, dtype=torch.float64)
        means = torch.as_tensor(mixture.means_).to(codes)
        covariances = torch.as_tensor(mixture.covariances_, dtype=torch.float64)
        scales = (
            covariances.sqrt() if self.covariance == "diag" else torch.linalg.cholesky(covariances)
        )
        tensors = (weights, means, scales.to(codes), code_shape, codes.device)
        if before is not None:
            self._cached = (
                (model, weights_version(model), before),
                generator.get_state(),
                tensors,
                (self.components, self.reg_covar, self.bic, self.held_out_ll, self.codes_fit),
            )
        return tensors

    @torch.no_grad()
    def chunks(
        self, model: Any, size: int, generator: torch.Generator | None, real: Callable
    ) -> Iterator[Tensor]:
        """The stream ``generator`` draws: the training items (``fit_items``), the fit's seed,
        then each latent's component and noise."""
        weights, means, scales, code_shape, device = self._mixture(model, size, generator, real)
        draw_on = generator.device if generator is not None else device
        while True:
            k = torch.multinomial(weights.to(draw_on), size, True, generator=generator)
            noise = torch.randn(
                size, means.shape[1], generator=generator, device=draw_on, dtype=means.dtype
            )
            k, noise = k.to(device), noise.to(device) * self.temperature
            if self.covariance == "diag":
                z = means[k] + scales[k] * noise
            else:  # one component at a time: no (size, latent, latent) gather
                z = means[k].clone()
                for c in k.unique():
                    rows = k == c
                    z[rows] += noise[rows] @ scales[c].T
            self.drawn += size
            self.kept += size
            yield model.generate(z.reshape(size, *code_shape))


class Reconstructions(CodeSampler):
    """``G(E(x))`` of training items ``x`` drawn at random (uniformly, with replacement), as
    samples: a diagnostic, not a generative sampler (it passes training items through the
    autoencoder). Scored with the sample metrics it says what the decoder draws where the codes
    are, so it separates the decoder's share of a gap from the latent density's: a latent
    sampler that fits the codes (``ExPostDensity``) tends to it as its mixture tightens.
    Needs an encoder (VAE/GAN: the posterior mean, the code ``reconstruct`` decodes)."""

    name = "rejection=reconstruct"

    def settings(self) -> dict[str, Any]:
        return {
            "method": "reconstructions G(E(x)) (a diagnostic: training items through the "
            "autoencoder, not samples of the model)"
        }

    @torch.no_grad()
    def chunks(
        self, model: Any, size: int, generator: torch.Generator | None, real: Callable
    ) -> Iterator[Tensor]:
        """Training items drawn with ``generator``, ``size`` at a time, decoded from their codes."""
        while True:
            x = real(size, generator)
            self.drawn += size
            self.kept += size
            yield model.generate(self.encode(model, x))
