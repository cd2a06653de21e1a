"""The samplers of ``ganzoo.rejection``: discriminator rejection sampling (its score, what it
keeps, packed groups, refining D), Jacobian-based truncation (the norm, what it keeps),
discriminator optimal transport (k_eff, where it moves latents), and
``ganzoo-eval rejection=...`` on a trained checkpoint."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch import Tensor

from conftest import compose_run, quick_overrides
from ganzoo.data import RingDataModule
from ganzoo.evaluate import evaluate
from ganzoo.metrics.suite import EvalContext
from ganzoo.models import load_checkpoint
from ganzoo.models.priors import NormalPrior
from ganzoo.rejection import (
    DiscriminatorRejection,
    ExPostDensity,
    JacobianTruncation,
    LatentTransport,
    Reconstructions,
    TrainingItems,
    rebatched,
)
from ganzoo.train import train


class Labelled(torch.nn.Module):
    """A stand-in model: sample ``i`` is the number ``i`` (counting on across calls); samples
    whose group index is odd are bad, and D says so with logit ``bad`` (good ones: 0)."""

    def __init__(self, judged_together: int = 1, bad: float = -20.0):
        super().__init__()
        self.judged_together = judged_together
        self.bad = bad
        self.count = 0

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = torch.arange(self.count, self.count + n, dtype=torch.float32).unsqueeze(1)
        self.count += n
        return x + 0.5 * torch.rand(n, 1, generator=generator)  # the group index stays exact

    def realness(self, x: Tensor) -> Tensor:
        assert len(x) % self.judged_together == 0, "a partial group reached D"
        group = (x[:: self.judged_together, 0] // self.judged_together).long()
        return torch.where(group % 2 == 1, self.bad, 0.0)


def test_score_is_drs_formula():
    drs = DiscriminatorRejection(epsilon=1e-3)
    logits, top = torch.tensor([-3.0, -0.5, 2.0]), torch.tensor(2.0)
    expected = [(d - 2.0) - math.log(1.0 - math.exp(d - 2.0 - 1e-3)) for d in (-3.0, -0.5, 2.0)]
    torch.testing.assert_close(drs.score(logits, top), torch.tensor(expected))


def test_gamma_is_the_percentile_of_the_scores():
    drs = DiscriminatorRejection(percentile=50.0)
    logits, top = torch.tensor([-4.0, -2.0, -1.0, -0.5, 0.0]), torch.tensor(0.0)
    p = drs.keep_probability(logits, top)
    f = drs.score(logits, top)
    torch.testing.assert_close(p, torch.sigmoid(f - f[2]))
    assert p[2].item() == 0.5
    assert torch.all(p[1:] > p[:-1])  # a higher logit is kept more often


def test_keeps_what_d_rates_real_and_drops_the_rest_in_exact_batches():
    drs = DiscriminatorRejection(burn_in=100, percentile=95.0)
    gen = torch.Generator().manual_seed(0)
    batches = list(drs.batches(Labelled(), 250, batch_size=64, generator=gen))
    assert [len(b) for b in batches] == [64, 64, 64, 58]
    kept = torch.cat(batches)[:, 0].long()
    assert torch.all(kept % 2 == 0)  # logit -20: never kept
    assert len(set(kept.tolist())) == 250
    # Every good candidate after the burn-in has F = gamma, so half of them are kept.
    assert drs.acceptance == pytest.approx(0.25, abs=0.05)


def test_the_same_generator_seed_gives_the_same_samples():
    def draw() -> Tensor:
        drs = DiscriminatorRejection(burn_in=50, percentile=80.0)
        gen = torch.Generator().manual_seed(3)
        return torch.cat(list(drs.batches(Labelled(bad=-1.0), 100, 32, gen)))

    torch.testing.assert_close(draw(), draw())


def test_packed_groups_are_kept_or_dropped_whole():
    drs = DiscriminatorRejection(burn_in=11, percentile=95.0)  # burn-in of whole groups: 12
    kept = torch.cat(list(drs.batches(Labelled(judged_together=2), 40, 10)))[:, 0].long()
    assert len(kept) == 40
    pairs = kept.reshape(-1, 2)
    assert torch.all(pairs[:, 1] == pairs[:, 0] + 1)  # the two samples of one group
    assert torch.all((pairs[:, 0] // 2) % 2 == 0)  # of good groups only


def test_gives_up_with_a_clear_message_when_nothing_is_kept():
    drs = DiscriminatorRejection(burn_in=10, percentile=100.0, max_candidates=5)
    model = Labelled(bad=0.0)  # every logit equal: F - gamma = 0 and p = 1/2, no error

    assert len(torch.cat(list(drs.batches(model, 20, 10)))) == 20

    class Hopeless(Labelled):
        def realness(self, x: Tensor) -> Tensor:  # one candidate in ten kept, half the time
            return torch.where(x[:, 0].long() % 10 == 0, 0.0, -1e4)

    with pytest.raises(RuntimeError, match="lower rejection.percentile to keep more"):
        list(drs.batches(Hopeless(), 20, 10))


def test_logit_max_rises_with_larger_logits_seen_after_the_burn_in():
    class Rising(Labelled):
        def realness(self, x: Tensor) -> Tensor:  # every candidate beats all the earlier ones
            return x[:, 0].floor() * 0.01

    drs = DiscriminatorRejection(burn_in=10, percentile=50.0, max_candidates=20)
    kept = torch.cat(list(drs.batches(Rising(), 100, 10, torch.Generator().manual_seed(0))))
    assert len(kept) == 100  # with a stale maximum, F is NaN and nothing would be kept
    assert 0.3 < drs.acceptance < 0.7
    assert drs.settings()["candidates_per_batch"] == 10


def test_bad_settings_name_their_key():
    with pytest.raises(ValueError, match="rejection.percentile"):
        DiscriminatorRejection(percentile=120)
    with pytest.raises(ValueError, match="rejection.burn_in"):
        DiscriminatorRejection(burn_in=0)


def test_a_model_without_discriminator_is_refused():
    from tiny_family import TinyAutoencoder

    class NoRealness(Labelled):
        realness = None

    for model in (NoRealness(), TinyAutoencoder(shape=[2])):
        with pytest.raises(ValueError, match="no discriminator"):
            list(DiscriminatorRejection(burn_in=1).batches(model, 4, 4))


@pytest.fixture(scope="module")
def ring_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ring_drs")
    cfg = compose_run(
        [
            "experiment=gan_ring_pacgan2",
            "data.num_train=400",
            "data.num_val=100",
            *quick_overrides(),
        ],
        tmp / "run",
    )
    train(cfg)
    GlobalHydra.instance().clear()
    return tmp / "run" / "checkpoints" / "last.ckpt"


def run_eval(ckpt, out, *overrides) -> dict:
    cfg = compose_run([f"ckpt_path={ckpt}", f"out={out}", *overrides], out, "eval")
    try:
        return evaluate(cfg)
    finally:
        GlobalHydra.instance().clear()


def test_ganzoo_eval_with_rejection_records_its_sampler(ring_ckpt, tmp_path):
    small = ["metrics.mode_statistics.num_samples=400", "batch_size=100"]
    plain = run_eval(ring_ckpt, tmp_path / "plain", *small)
    drs = run_eval(ring_ckpt, tmp_path / "drs", *small, "rejection=drs", "rejection.burn_in=200")
    saved = json.loads((tmp_path / "drs" / "metrics.json").read_text())
    entry = saved["metrics"]["high_quality"]
    assert entry["num_generated"] == 400
    assert entry["rejection"]["percentile"] == 95.0
    assert entry["rejection"] == saved["eval"]["rejection"]
    assert 0.0 < entry["acceptance"] < 1.0
    assert "rejection" not in plain["metrics"]["high_quality"]
    assert plain["eval"]["rejection"] is None
    assert drs["metrics"]["high_quality"]["value"] >= plain["metrics"]["high_quality"]["value"]


def test_each_sample_stream_records_its_own_acceptance(ring_ckpt):
    model = load_checkpoint(ring_ckpt)
    data = RingDataModule(num_train=200, num_val=100, num_test=100, batch_size=50)
    drs = DiscriminatorRejection(burn_in=100, percentile=80.0)
    ctx = EvalContext(model, data, batch_size=50, rejection=drs)
    streams = {}
    for n in (100, 300):
        streams[n] = torch.cat(list(ctx.generated_batches(n)))
        assert len(streams[n]) == n
        assert ctx.acceptance[n] == drs.acceptance
    assert set(ctx.acceptance) == {100, 300}
    # a stream asked for again is replayed, not drawn again: the same samples, the sampler idle
    acceptance, drawn = dict(ctx.acceptance), drs.drawn
    torch.testing.assert_close(torch.cat(list(ctx.generated_batches(100))), streams[100])
    assert drs.drawn == drawn and ctx.acceptance == acceptance


def test_a_sampler_stream_left_unfinished_is_drawn_again_in_full(ring_ckpt):
    model = load_checkpoint(ring_ckpt)
    data = RingDataModule(num_train=200, num_val=100, num_test=100, batch_size=50)
    ctx = EvalContext(model, data, batch_size=50, rejection=DiscriminatorRejection(burn_in=100))
    stream = ctx.generated_batches(200)
    next(stream)
    stream.close()
    assert ctx.drawn_streams == {}
    fresh = EvalContext(model, data, batch_size=50, rejection=DiscriminatorRejection(burn_in=100))
    torch.testing.assert_close(
        torch.cat(list(ctx.generated_batches(200))), torch.cat(list(fresh.generated_batches(200)))
    )


def test_the_first_samples_kept_for_the_picture_are_the_ones_scored(ring_ckpt):
    model = load_checkpoint(ring_ckpt)
    data = RingDataModule(num_train=200, num_val=100, num_test=100, batch_size=50)
    ctx = EvalContext(
        model, data, batch_size=40, rejection=DiscriminatorRejection(burn_in=100), keep_first=70
    )
    scored = torch.cat(list(ctx.generated_batches(300))).cpu()
    assert len(ctx.first_samples[300]) == 70  # across two batches of 40
    torch.testing.assert_close(ctx.first_samples[300], scored[:70], rtol=0, atol=0)
    list(ctx.generated_batches(20))
    torch.testing.assert_close(ctx.first_samples[20], torch.cat(list(ctx.generated_batches(20))))


def test_refinement_trains_a_copy_of_d_against_the_fixed_generator(ring_ckpt):
    model = load_checkpoint(ring_ckpt)
    data = RingDataModule(num_train=400, num_val=100, num_test=100)
    data.setup("fit")
    real = torch.stack([data.train_set[i][0] for i in range(400)])

    def items(k: int, generator: torch.Generator | None) -> Tensor:
        return real[torch.randint(len(real), (k,), generator=generator)]

    before = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    drs = DiscriminatorRejection(refine_steps=50, refine_lr=2e-3, refine_batch_size=64)
    judge = drs.refined(model, items, torch.Generator().manual_seed(0))
    again = drs.refined(model, items, torch.Generator().manual_seed(0))
    for k, v in model.discriminator.state_dict().items():
        torch.testing.assert_close(v, before[k])  # the model's own D is left as trained
    for k, v in judge.discriminator.state_dict().items():
        torch.testing.assert_close(v, again.discriminator.state_dict()[k])  # seeded: the same

    fake = model.sample(400, generator=torch.Generator().manual_seed(1))

    def gap(m) -> float:  # mean logit of real items over that of samples
        return (m.realness(real).mean() - m.realness(fake).mean()).item()

    assert gap(judge) > gap(model) + 1.0
    assert not judge.discriminator.training  # judged in eval mode


def test_refinement_needs_training_data_and_a_discriminator():
    from tiny_family import TinyAutoencoder

    drs = DiscriminatorRejection(burn_in=4, refine_steps=1)
    with pytest.raises(ValueError, match="rejection.refine_steps needs training data"):
        list(drs.batches(Labelled(), 4, 4))
    with pytest.raises(ValueError, match="no discriminator"):
        list(drs.batches(TinyAutoencoder(shape=[2]), 4, 4, real=lambda k, g: torch.zeros(k, 2)))
    with pytest.raises(ValueError, match="rejection.refine_steps"):
        DiscriminatorRejection(refine_steps=-1)


def test_ganzoo_eval_refines_d_on_the_training_split(ring_ckpt, tmp_path):
    small = ["metrics.mode_statistics.num_samples=200", "batch_size=100"]
    refine = ["rejection.refine_steps=20", "rejection.refine_batch_size=50"]
    out = run_eval(ring_ckpt, tmp_path, *small, "rejection=drs", "rejection.burn_in=100", *refine)
    settings = out["eval"]["rejection"]
    assert settings["refine_steps"] == 20 and settings["refine_batch_size"] == 50
    assert out["metrics"]["high_quality"]["num_generated"] == 200


def test_rebatched_draws_no_chunk_once_n_rows_are_out():
    drawn = []

    def chunks():
        while True:
            drawn.append(len(drawn))
            yield torch.full((3, 1), float(len(drawn)))

    out = list(rebatched(chunks(), 7, 4))
    assert [len(b) for b in out] == [4, 3]
    assert torch.cat(out).squeeze(1).tolist() == [1, 1, 1, 2, 2, 2, 3]
    assert len(drawn) == 3  # the third chunk held the 7th row; no fourth was drawn
    drawn.clear()
    assert [len(b) for b in rebatched(chunks(), 5, 100)] == [5] and len(drawn) == 2
    drawn.clear()
    assert list(rebatched(chunks(), 0, 4)) == [] and drawn == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(rebatched(chunks(), 5, 0))


def test_drs_draws_only_the_candidates_it_needs():
    """The stream DRS reads: the burn-in's candidates, then whole batches of candidates and their
    uniforms until ``n`` are kept, and nothing after (its numbers depend on it)."""
    model = Labelled()
    g = torch.Generator().manual_seed(3)
    drs = DiscriminatorRejection(burn_in=10)
    drs.keep_probability = lambda logits, top: torch.ones_like(logits)  # keep every candidate
    out = torch.cat(list(drs.batches(model, 25, 10, g)))
    assert len(out) == 25 and model.count == 10 + 30  # burn-in, then 3 batches of 10
    ref = torch.Generator().manual_seed(3)
    torch.rand(10, 1, generator=ref)  # the burn-in's candidates
    for _ in range(3):  # each batch: its candidates, then their uniforms
        torch.rand(10, 1, generator=ref)
        torch.rand(10, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())


class Cubed(torch.nn.Module):
    """A stand-in model: ``G(z) = z^3`` elementwise, whose Jacobian ``diag(3 z^2)`` has the norm
    ``3 sqrt(sum z^4)``: smallest near the origin."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.prior = NormalPrior(dim)

    def generate(self, z: Tensor) -> Tensor:
        return z.pow(3)


def test_jacobian_norm_is_exact_for_small_latents_and_estimated_for_large():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5)
    ).double()
    model = types.SimpleNamespace(generate=net)
    z = torch.randn(6, 12, dtype=torch.float64)
    exact = torch.stack(
        [torch.autograd.functional.jacobian(net, zi).pow(2).sum().sqrt() for zi in z]
    ).float()
    x, norm = JacobianTruncation(directions=12).jacobian_norms(model, z)
    torch.testing.assert_close(x, net(z))
    torch.testing.assert_close(norm, exact)
    g = torch.Generator().manual_seed(1)
    _, estimate = JacobianTruncation(directions=4000).jacobian_norms(model, z, g)
    torch.testing.assert_close(estimate, exact, rtol=0.05, atol=0.0)  # 4,000 directions, not 12


def test_jbt_with_estimated_norms_draws_its_directions_from_the_generator():
    model = Cubed(12).eval()  # 12 latent dimensions, 4 random directions: estimated norms
    runs = []
    for seed in (0, 0, 1):
        jbt = JacobianTruncation(keep=0.5, burn_in=400, directions=4)
        torch.manual_seed(seed)  # the global stream must not matter
        runs.append(torch.cat(list(jbt.batches(model, 200, 64, torch.Generator().manual_seed(5)))))
        assert jbt.settings()["exact_norm"] is False
        assert 0.35 < jbt.acceptance < 0.65
    torch.testing.assert_close(runs[0], runs[1])
    torch.testing.assert_close(runs[0], runs[2])


def test_jbt_keeps_the_latents_where_g_stretches_least():
    model = Cubed().eval()
    jbt = JacobianTruncation(keep=0.5, burn_in=4000)
    out = torch.cat(list(jbt.batches(model, 1000, 300, torch.Generator().manual_seed(0))))
    assert out.shape == (1000, 2)
    z = out.sign() * out.abs().pow(1 / 3)
    norm = 3 * z.pow(4).sum(1).sqrt()
    assert norm.max() <= jbt.threshold * (1 + 1e-5)
    # the threshold is the median norm of N(0, I) latents: 3 sqrt(z1^4 + z2^4) at its median
    ref = (
        3 * torch.randn(200_000, 2, generator=torch.Generator().manual_seed(9)).pow(4).sum(1).sqrt()
    )
    assert jbt.threshold == pytest.approx(ref.median().item(), rel=0.05)
    assert jbt.acceptance == pytest.approx(0.5, abs=0.04)
    assert jbt.settings()["exact_norm"] is True and jbt.settings()["keep"] == 0.5
    again = torch.cat(list(jbt.batches(model, 1000, 300, torch.Generator().manual_seed(0))))
    torch.testing.assert_close(again, out)  # the same seed, the same samples
    everything = JacobianTruncation(keep=1.0, burn_in=500)
    assert sum(len(b) for b in everything.batches(model, 400, 100)) == 400
    assert everything.acceptance > 0.99


def test_jbt_refuses_a_model_in_training_mode():
    model = Cubed().train()
    with pytest.raises(ValueError, match="eval mode"):
        list(JacobianTruncation(burn_in=10).batches(model, 4, 4))


def test_jbt_settings_and_giving_up_name_their_key():
    with pytest.raises(ValueError, match="rejection.keep"):
        JacobianTruncation(keep=0.0)
    with pytest.raises(ValueError, match="rejection.directions"):
        JacobianTruncation(directions=0)
    tiny = JacobianTruncation(keep=1e-6, burn_in=1000, max_candidates=1)
    with pytest.raises(RuntimeError, match="raise rejection.keep"):
        list(tiny.batches(Cubed().eval(), 100, 100, torch.Generator().manual_seed(0)))


def test_ganzoo_eval_with_jbt_records_its_sampler(ring_ckpt, tmp_path):
    small = ["metrics.mode_statistics.num_samples=400", "batch_size=100"]
    out = run_eval(
        ring_ckpt, tmp_path, *small, "rejection=jbt", "rejection.burn_in=400", "rejection.keep=0.6"
    )
    entry = out["metrics"]["high_quality"]
    settings = out["eval"]["rejection"]
    assert entry["rejection"] == settings
    assert settings["method"].startswith("Jacobian-based truncation")
    assert settings["keep"] == 0.6 and settings["exact_norm"] is True  # a 2-D latent
    assert "threshold" not in settings  # a measured value, which would split the protocol
    assert entry["rejection_measured"]["threshold"] > 0
    assert entry["acceptance"] == pytest.approx(0.6, abs=0.1)


class Peaked(torch.nn.Module):
    """A stand-in GAN: ``G(z) = z`` and D's logit ``-a ||x - c||^2`` (summed over each group of
    ``judged_together`` samples): D rates ``c`` most real."""

    def __init__(self, prior=None, judged_together: int = 1, a: float = 2.0):
        super().__init__()
        self.prior = prior if prior is not None else NormalPrior(2)
        self.judged_together = judged_together
        self.a = a
        self.c = torch.tensor([1.0, -0.5])

    def generate(self, z: Tensor) -> Tensor:
        return z

    def judging_network(self) -> torch.nn.Module:
        return self

    def judge(self, x: Tensor) -> Tensor:
        per_sample = -self.a * (x - self.c).pow(2).sum(1)
        return per_sample.reshape(-1, self.judged_together).sum(1)

    @torch.no_grad()
    def realness(self, x: Tensor) -> Tensor:
        return self.judge(x)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.generate(self.prior.sample(n, generator=generator))


def test_dot_k_eff_is_the_largest_ratio_over_its_pairs_and_no_steps_change_nothing():
    model = Peaked().eval()
    dot = LatentTransport(steps=0, pairs=50)
    out = torch.cat(list(dot.batches(model, 300, 64, torch.Generator().manual_seed(3))))
    g = torch.Generator().manual_seed(3)
    z1, z2 = model.prior.sample(50, generator=g), model.prior.sample(50, generator=g)
    ratio = (model.judge(z1) - model.judge(z2)).abs() / (z1 - z2).norm(dim=1)
    assert dot.k_eff == pytest.approx(ratio.max().item())
    want = torch.cat([model.prior.sample(64, generator=g) for _ in range(5)])[:300]
    torch.testing.assert_close(out, want)  # after the pairs, the prior's own stream
    assert dot.acceptance == 1.0 and dot.measured()["moved"] == 0.0


def test_dot_moves_the_latents_where_d_is_steeper_than_k_eff_and_leaves_the_rest():
    """Under ``D = -a ||x - c||^2`` and ``G(z) = z`` the transport objective's minimiser is
    ``z_y`` itself within ``k_eff / 2a`` of ``c`` (D's slope there is below ``k_eff``), and on
    that circle for latents outside it: only those move, towards ``c``."""
    model = Peaked().eval()
    dot = LatentTransport(steps=30, lr=0.05)
    out = torch.cat(list(dot.batches(model, 500, 100, torch.Generator().manual_seed(0))))
    g = torch.Generator().manual_seed(0)
    for _ in range(2):  # the k_eff pairs
        model.prior.sample(dot.pairs, generator=g)
    z_y = torch.cat([model.prior.sample(100, generator=g) for _ in range(5)])

    def objective(z):
        return (z - z_y + dot.delta).norm(dim=1) - model.judge(z) / dot.k_eff

    radius = dot.k_eff / (2 * model.a)
    before, after = (z_y - model.c).norm(dim=1), (out - model.c).norm(dim=1)
    moved = (out - z_y).norm(dim=1)
    far, near = before > radius + 0.5, before < radius - 0.5
    assert far.sum() > 10 and near.sum() > 100
    assert moved[far].min() > 0.4 and moved[near].max() < 0.2  # Adam's steps of about lr
    assert torch.all(after[far] < before[far]) and torch.all(after[far] > radius - 0.1)
    assert torch.all(objective(out)[far] < objective(z_y)[far])
    assert dot.measured()["moved"] == pytest.approx(moved.mean().item(), rel=1e-5)
    again = torch.cat(list(dot.batches(model, 500, 100, torch.Generator().manual_seed(0))))
    torch.testing.assert_close(again, out)


def test_dot_keeps_a_uniform_prior_s_latents_in_its_box_and_counts_packed_samples_exactly():
    from ganzoo.models.priors import UniformPrior

    model = Peaked(prior=UniformPrior(2, low=-0.2, high=0.2)).eval()
    out = torch.cat(list(LatentTransport(steps=5, lr=1.0).batches(model, 200, 50)))
    assert out.min() >= -0.2 and out.max() <= 0.2
    assert (out.abs() == 0.2).any()  # steps of about 1 from inside a box of side 0.4: clipped
    packed = Peaked(judged_together=2).eval()
    batches = list(LatentTransport(steps=5).batches(packed, 251, 63))
    assert [len(b) for b in batches] == [63, 63, 63, 62]


def test_dot_refuses_a_training_model_a_family_without_d_and_bad_settings():
    from tiny_family import TinyAutoencoder

    with pytest.raises(ValueError, match="eval mode"):
        list(LatentTransport().batches(Peaked().train(), 4, 4))
    with pytest.raises(ValueError, match="no discriminator"):
        list(LatentTransport().batches(TinyAutoencoder(shape=[2]).eval(), 4, 4))
    for key, kwargs in [("steps", {"steps": -1}), ("lr", {"lr": 0.0}), ("pairs", {"pairs": 0})]:
        with pytest.raises(ValueError, match=f"rejection.{key}"):
            LatentTransport(**kwargs)
    flat = Peaked(a=0.0).eval()
    with pytest.raises(RuntimeError, match="k_eff"):
        list(LatentTransport().batches(flat, 4, 4))


def test_ganzoo_eval_with_dot_records_its_sampler(ring_ckpt, tmp_path):
    small = ["metrics.mode_statistics.num_samples=400", "batch_size=100"]
    out = run_eval(ring_ckpt, tmp_path, *small, "rejection=dot", "rejection.steps=3")
    entry = out["metrics"]["high_quality"]
    settings = out["eval"]["rejection"]
    assert entry["rejection"] == settings
    assert settings["method"].startswith("discriminator optimal transport")
    assert settings["steps"] == 3 and settings["betas"] == [0.0, 0.9]
    assert entry["rejection_measured"]["k_eff"] > 0
    assert entry["rejection_measured"]["moved"] > 0
    assert entry["acceptance"] == 1.0


def test_dot_drs_applies_drs_s_rule_to_dot_s_samples():
    """DRS with a DOT proposal: its candidates are transported (none left outside the circle of
    radius ``k_eff / 2a`` around ``c`` that DOT moves latents onto, where plain DRS, keeping
    every candidate with probability at least 1/2 at percentile 0, keeps some), and DRS still
    rejects, keeping higher logits than DOT alone returns."""
    model = Peaked().eval()

    def samples(sampler):
        return torch.cat(list(sampler.batches(model, 400, 100, torch.Generator().manual_seed(0))))

    def drs(percentile, proposal):
        return DiscriminatorRejection(burn_in=200, percentile=percentile, proposal=proposal)

    lenient = drs(0, LatentTransport(steps=100, lr=0.05))  # far enough for the farthest
    transported = samples(lenient)
    radius = lenient.proposal.k_eff / (2 * model.a)
    assert (transported - model.c).norm(dim=1).max() < radius + 0.1
    assert (samples(drs(0, None)) - model.c).norm(dim=1).max() > radius + 0.3

    combined = drs(50, LatentTransport(steps=30, lr=0.05))
    out = samples(combined)
    assert 0.2 < combined.acceptance < 0.9
    alone = samples(LatentTransport(steps=30, lr=0.05))
    assert model.judge(out).mean() > model.judge(alone).mean() + 0.1
    assert combined.measured()["k_eff"] == combined.proposal.k_eff > 0
    assert combined.measured()["moved"] > 0
    settings = combined.settings()
    assert "optimal transport" in settings["method"] and settings["proposal"]["steps"] == 30
    assert "proposal" not in drs(50, None).settings()  # plain DRS's entry as before
    torch.testing.assert_close(samples(combined), out)


@pytest.mark.parametrize(("sampler", "dot"), [("dot_drs", "proposal"), ("drs_dot", "transport")])
def test_ganzoo_eval_with_drs_and_dot_records_both_samplers(ring_ckpt, tmp_path, sampler, dot):
    small = ["metrics.mode_statistics.num_samples=400", "batch_size=100"]
    out = run_eval(
        ring_ckpt,
        tmp_path,
        *small,
        f"rejection={sampler}",
        "rejection.burn_in=500",
        f"rejection.{dot}.steps=3",
    )
    entry = out["metrics"]["high_quality"]
    assert entry["rejection"]["method"].startswith("discriminator rejection sampling")
    assert entry["rejection"][dot]["steps"] == 3
    assert entry["rejection_measured"]["k_eff"] > 0
    assert entry["rejection_measured"]["moved"] > 0
    assert 0.0 < entry["acceptance"] < 1.0


def test_drs_dot_transports_exactly_the_latents_drs_keeps():
    """DRS with a transport (rejection=drs_dot): DRS's rule judges the model's own samples, so
    with no DOT steps it keeps what plain DRS keeps from the same stream (after the transport's
    k_eff pairs); with steps, each kept latent is moved to a higher logit. Not with a proposal."""
    model = Peaked().eval()
    pairs = 50

    def drs(transport, generator):
        sampler = DiscriminatorRejection(burn_in=200, percentile=50, transport=transport)
        return sampler, torch.cat(list(sampler.batches(model, 400, 100, generator)))

    _, unmoved = drs(LatentTransport(steps=0, pairs=pairs), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    model.prior.sample(pairs, generator=g), model.prior.sample(pairs, generator=g)  # k_eff's
    plain, kept = drs(None, g)
    torch.testing.assert_close(unmoved, kept)

    combined, out = drs(LatentTransport(steps=30, lr=0.05, pairs=pairs), torch.Generator())
    assert 0.2 < combined.acceptance < 0.9
    assert model.judge(out).mean() > model.judge(kept).mean() + 0.1
    assert combined.measured()["k_eff"] == combined.transport.k_eff > 0
    assert combined.measured()["moved"] > 0
    settings = combined.settings()
    assert settings["method"].endswith(
        "then discriminator optimal transport of the kept latents (Tanaka 2019)"
    )
    assert settings["transport"]["steps"] == 30 and "transport" not in plain.settings()
    with pytest.raises(ValueError, match="exclude each other"):
        DiscriminatorRejection(proposal=LatentTransport(), transport=LatentTransport())


CENTRES = torch.tensor([[-10.0, 0.0], [0.0, 0.0], [10.0, 0.0]])
#: Each cluster's covariance: correlated, and unlike the others'.
COVARIANCES = torch.tensor(
    [[[0.04, 0.03], [0.03, 0.04]], [[0.01, 0.0], [0.0, 0.09]], [[0.09, -0.02], [-0.02, 0.01]]]
)
SHARES = torch.tensor([0.5, 0.25, 0.25])


def three_clusters(k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` training items from three Gaussian clusters (``CENTRES``, ``COVARIANCES``,
    ``SHARES``)."""
    which = torch.multinomial(SHARES, k, True, generator=generator)
    noise = torch.randn(k, 2, 1, generator=generator)
    return CENTRES[which] + (torch.linalg.cholesky(COVARIANCES)[which] @ noise).squeeze(-1)


class Identity(torch.nn.Module):
    """A stand-in encoder family: ``E(x) = x`` and ``G(z) = z``, so samples are the latents."""

    def __init__(self):
        super().__init__()
        self.prior = NormalPrior(2)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode(self, x: Tensor) -> Tensor:
        return x

    def generate(self, z: Tensor) -> Tensor:
        return z * self.scale


def per_cluster(x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The share of ``x`` nearest each centre, and each cluster's sample covariance."""
    which = torch.cdist(x, CENTRES).argmin(dim=1)
    share = torch.bincount(which, minlength=3).float() / len(x)
    return share, [torch.cov(x[which == c].T) for c in range(3)]


def expost_samples(sampler: ExPostDensity, n: int = 6000, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat(list(sampler.batches(Identity().eval(), n, 500, g, three_clusters)))


def test_expost_samples_the_density_of_the_codes_not_the_prior():
    sampler = ExPostDensity(components=[1, 2, 3, 5, 8], fit_items=6000)
    out = expost_samples(sampler)
    assert out.shape == (6000, 2)
    assert sampler.components == 3  # BIC's choice: one component per cluster
    assert set(sampler.measured()["bic"]) == {1, 2, 3, 5, 8}
    share, covariances = per_cluster(out)
    torch.testing.assert_close(share, SHARES, atol=0.03, rtol=0.0)
    for got, want in zip(
        covariances, COVARIANCES, strict=True
    ):  # each cluster's own shape and tilt
        torch.testing.assert_close(got, want, atol=0.008, rtol=0.0)
    assert sampler.acceptance == 1.0  # nothing is thrown away


def test_expost_held_out_selection_scores_each_fit_on_codes_it_did_not_see():
    from sklearn.mixture import GaussianMixture

    codes = three_clusters(2000, torch.Generator().manual_seed(1))
    sampler = ExPostDensity(components=[1, 3, 8], fit_items=2000, select="held_out")
    mixture = sampler.fit(codes, seed=5)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(5))
    held, fitted = codes[order[:200]].double().numpy(), codes[order[200:]].double().numpy()
    assert sampler.bic is None and set(sampler.held_out_ll) == {1, 3, 8}
    assert sampler.components == max(sampler.held_out_ll, key=sampler.held_out_ll.get) != 1
    for k, ll in sampler.held_out_ll.items():  # each fit saw the other 1,800 codes only
        alone = GaussianMixture(
            k, covariance_type="full", max_iter=2000, tol=1e-3, reg_covar=1e-6, random_state=5
        ).fit(fitted)
        assert ll == pytest.approx(alone.score(held), rel=1e-9)
        if k == sampler.components:
            np.testing.assert_allclose(mixture.means_, alone.means_, rtol=1e-9)
    settings = sampler.settings()
    assert settings["select"] == "held_out" and settings["held_out"] == 0.1
    out = expost_samples(sampler, n=3000)  # and it samples the codes' density
    torch.testing.assert_close(per_cluster(out)[0], SHARES, atol=0.04, rtol=0.0)
    assert sampler.measured()["held_out_ll"] is not None


def test_expost_chooses_reg_covar_with_the_components_by_held_out_likelihood():
    from sklearn.mixture import GaussianMixture

    codes = three_clusters(2000, torch.Generator().manual_seed(1))
    sampler = ExPostDensity(
        components=[1, 3], fit_items=2000, select="held_out", reg_covar=[1e-6, 0.5]
    )
    sampler.fit(codes, seed=5)
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(5))
    held, fitted = codes[order[:200]].double().numpy(), codes[order[200:]].double().numpy()
    assert set(sampler.held_out_ll) == {"1, 1e-06", "1, 0.5", "3, 1e-06", "3, 0.5"}
    for key, ll in sampler.held_out_ll.items():  # every pair fit on the same 1,800 codes
        k, reg = key.split(", ")
        alone = GaussianMixture(
            int(k),
            covariance_type="full",
            max_iter=2000,
            tol=1e-3,
            reg_covar=float(reg),
            random_state=5,
        ).fit(fitted)
        assert ll == pytest.approx(alone.score(held), rel=1e-9)
    # clusters of variance 0.01-0.09 are blurred by 0.5 on the diagonal: the held-out codes
    # prefer three tight components
    assert (sampler.components, sampler.reg_covar) == (3, 1e-6)
    assert sampler.measured()["reg_covar"] == 1e-6
    assert sampler.settings()["reg_covar"] == [1e-6, 0.5]
    bic = ExPostDensity(components=3, fit_items=2000, reg_covar=[0.5, 1e-6])
    bic.fit(codes, seed=5)
    assert set(bic.bic) == {"3, 1e-06", "3, 0.5"} and bic.reg_covar == 1e-6
    single = ExPostDensity(components=[1, 3], fit_items=2000, select="held_out")
    single.fit(codes, seed=5)
    assert set(single.held_out_ll) == {1, 3} and single.settings()["reg_covar"] == 1e-6


def test_expost_temperature_scales_each_component_s_spread_and_keeps_its_shares():
    sampler = ExPostDensity(components=3, fit_items=6000, temperature=0.5)
    share, covariances = per_cluster(expost_samples(sampler))
    torch.testing.assert_close(share, SHARES, atol=0.03, rtol=0.0)
    for got, want in zip(covariances, COVARIANCES, strict=True):
        torch.testing.assert_close(got, 0.25 * want, atol=0.004, rtol=0.0)
    assert sampler.settings()["temperature"] == 0.5
    at_one = expost_samples(ExPostDensity(components=3, fit_items=6000, temperature=1.0))
    torch.testing.assert_close(at_one, expost_samples(ExPostDensity(components=3, fit_items=6000)))


def test_expost_diagonal_covariances_keep_the_variances_and_drop_the_correlations():
    sampler = ExPostDensity(components=3, fit_items=6000, covariance="diag")
    _, covariances = per_cluster(expost_samples(sampler))
    for got, want in zip(covariances, COVARIANCES, strict=True):
        torch.testing.assert_close(got, torch.diag(torch.diag(want)), atol=0.008, rtol=0.0)


def test_expost_defaults_to_ghosh_et_al_s_ten_components():
    sampler = ExPostDensity(fit_items=2000)
    out = expost_samples(sampler, n=500)
    assert sampler.components == 10 and sampler.settings()["components"] == 10
    assert torch.cdist(out, CENTRES).min(dim=1).values.max() < 1.5


def test_expost_draws_everything_from_the_generator():
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)  # the global stream must not matter
        runs.append(expost_samples(ExPostDensity(components=3, fit_items=1000), n=300, seed=7))
    torch.testing.assert_close(runs[0], runs[1])
    torch.testing.assert_close(runs[0], runs[2])
    other = expost_samples(ExPostDensity(components=3, fit_items=1000), n=300, seed=8)
    assert not torch.equal(other, runs[0])


def test_expost_reuses_its_fit_for_the_same_stream_and_refits_new_weights():
    reads = []

    def counted(k: int, g: torch.Generator | None) -> Tensor:
        reads.append(k)
        return three_clusters(k, g)

    model = Identity().eval()
    sampler = ExPostDensity(components=3, fit_items=1000)
    first = list(sampler.batches(model, 300, 100, torch.Generator().manual_seed(3), counted))
    read = sum(reads)
    again = list(sampler.batches(model, 300, 100, torch.Generator().manual_seed(3), counted))
    assert sum(reads) == read == 1000  # the second stream read no data: the same fit
    torch.testing.assert_close(torch.cat(again), torch.cat(first))  # and the same samples
    list(sampler.batches(model, 10, 100, torch.Generator().manual_seed(4), counted))
    assert sum(reads) == 2000  # another stream, another fit
    with torch.no_grad():
        model.scale.mul_(2.0)  # new weights: the cached fit is not theirs
    list(sampler.batches(model, 10, 100, torch.Generator().manual_seed(4), counted))
    assert sum(reads) == 3000


def test_expost_refuses_a_family_without_encoder_a_training_model_and_no_data():
    class NoEncoder(Identity):
        def encode(self, x: Tensor) -> Tensor:
            raise NotImplementedError("no encoder")

    with pytest.raises(ValueError, match="rejection=drs or rejection=jbt"):
        list(ExPostDensity(fit_items=50).batches(NoEncoder().eval(), 4, 4, None, three_clusters))
    with pytest.raises(ValueError, match="eval mode"):
        list(ExPostDensity().batches(Identity().train(), 4, 4, None, three_clusters))
    with pytest.raises(ValueError, match="training data"):
        list(ExPostDensity().batches(Identity().eval(), 4, 4))


def test_expost_settings_name_their_key():
    for kwargs, key in (
        ({"components": 0}, "rejection.components"),
        ({"components": []}, "rejection.components"),
        ({"components": "12"}, "rejection.components"),  # not the choices [1, 2]
        ({"components": True}, "rejection.components"),
        ({"components": [2.5]}, "rejection.components"),
        ({"components": 20, "fit_items": 10}, "raise rejection.fit_items"),
        ({"fit_items": 1}, "rejection.fit_items"),
        ({"fit_items": 2.5}, "rejection.fit_items"),
        ({"fit_items": "all"}, "rejection.fit_items"),
        ({"covariance": "tied"}, "rejection.covariance"),
        ({"max_iter": 0}, "rejection.max_iter"),
        ({"tol": 0.0}, "rejection.tol"),
        ({"reg_covar": -1.0}, "rejection.reg_covar"),
        ({"reg_covar": [1e-6, -1.0]}, "rejection.reg_covar"),
        ({"reg_covar": []}, "rejection.reg_covar"),
        ({"reg_covar": "0.01"}, "rejection.reg_covar"),
        ({"reg_covar": True}, "rejection.reg_covar"),
        ({"temperature": 0.0}, "rejection.temperature"),
        ({"select": "aic"}, "rejection.select"),
        ({"held_out": 0.0}, "rejection.held_out"),
        ({"held_out": 1.0}, "rejection.held_out"),
    ):
        with pytest.raises(ValueError, match=key):
            ExPostDensity(**kwargs)
    from_hydra = ExPostDensity(components=OmegaConf.create([5, 1, 5]))
    assert from_hydra.choices == [1, 5] and from_hydra.settings()["components"] is None


def test_ganzoo_eval_with_expost_refuses_a_gan_in_one_line(ring_ckpt, tmp_path):
    with pytest.raises(ValueError, match="GAN family has none"):
        run_eval(ring_ckpt, tmp_path, "metrics.mode_statistics.num_samples=100", "rejection=expost")


def test_expost_fit_on_every_training_item_reads_each_once_in_order():
    items = three_clusters(700, torch.Generator().manual_seed(5))
    data = TrainingItems([(x, 0) for x in items])  # a dataset of (item, label) pairs
    seen = []

    class Recording(Identity):
        def encode(self, x: Tensor) -> Tensor:
            seen.append(x)
            return x

    sampler = ExPostDensity(components=[1, 3], fit_items=None)
    out = torch.cat(list(sampler.batches(Recording().eval(), 50, 300, None, data)))
    assert out.shape == (50, 2)
    torch.testing.assert_close(torch.cat(seen), items, rtol=0, atol=0)
    assert [len(x) for x in seen] == [300, 300, 100]
    assert sampler.measured()["codes"] == 700 and sampler.components == 3
    assert sampler.settings()["fit_items"] is None
    with pytest.raises(ValueError, match="rejection.fit_items=null"):
        list(ExPostDensity(fit_items=None).batches(Identity().eval(), 4, 4, None, three_clusters))
    with pytest.raises(ValueError, match="from 700 training codes: lower rejection.components"):
        list(
            ExPostDensity(components=1000, fit_items=None).batches(
                Identity().eval(), 4, 4, None, data
            )
        )


def test_reconstructions_decode_the_codes_of_training_items_drawn_from_the_generator():
    model = Identity().eval()
    with torch.no_grad():
        model.scale.fill_(2.0)  # G(E(x)) = 2x: the decoder is applied to the codes
    sampler = Reconstructions()
    out = torch.cat(
        list(sampler.batches(model, 250, 100, torch.Generator().manual_seed(3), three_clusters))
    )
    g = torch.Generator().manual_seed(3)
    items = torch.cat([three_clusters(100, g) for _ in range(3)])[:250]
    torch.testing.assert_close(out, 2.0 * items)
    assert sampler.acceptance == 1.0 and sampler.drawn == 300
    assert "diagnostic" in sampler.settings()["method"]


def test_reconstructions_refuse_a_family_without_encoder_a_training_model_and_no_data(
    ring_ckpt, tmp_path
):
    with pytest.raises(ValueError, match="eval mode"):
        list(Reconstructions().batches(Identity().train(), 4, 4, None, three_clusters))
    with pytest.raises(ValueError, match="training data"):
        list(Reconstructions().batches(Identity().eval(), 4, 4))
    with pytest.raises(ValueError, match="GAN family has none"):
        run_eval(
            ring_ckpt, tmp_path, "metrics.mode_statistics.num_samples=100", "rejection=reconstruct"
        )
