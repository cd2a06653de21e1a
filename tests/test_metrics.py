"""The evaluation metrics against closed forms and constructed cases with known answers."""

from __future__ import annotations

import math
import urllib.error

import pytest
import torch
from torch.testing import assert_close

from ganzoo.metrics import (
    InceptionFeatures,
    InceptionWeightsError,
    classifier_score,
    density_coverage,
    frechet_distance,
    kernel_distance,
    kl_to_uniform,
    mode_statistics,
    parzen_log_likelihood,
    precision_recall,
)
from ganzoo.metrics.domain import (
    accuracy,
    labelled_tensors,
    load_or_train_classifier,
    sha256_file,
    train_classifier,
)
from ganzoo.metrics.manifold import knn_radii
from ganzoo.metrics.parzen import goodfellow_sigmas, mean_and_standard_error, select_sigma
from ganzoo.metrics.reconstruction import reconstruction_errors
from ganzoo.nets.classifier import ConvClassifier


@pytest.fixture(autouse=True)
def _one_thread():
    """Many small tensor ops: on a shared CPU one thread avoids OpenMP stalls."""
    torch.set_num_threads(1)


def exact_gaussian_sample(mean: torch.Tensor, cov: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` points whose empirical mean and (unbiased) covariance are ``mean`` and ``cov``."""
    z = torch.randn(
        n, mean.numel(), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    z = z - z.mean(0)
    whiten = torch.linalg.inv(torch.linalg.cholesky(z.T @ z / (n - 1)))
    return mean + (z @ whiten.T) @ torch.linalg.cholesky(cov).T


def spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64)


def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T


# --- Fréchet and kernel distances ------------------------------------------------------------


def test_frechet_distance_equals_the_closed_form_for_two_gaussians():
    d = 5
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.linspace(-1, 1, d, dtype=torch.float64)
    s1, s2 = spd(d, 1), spd(d, 2)
    real, fake = exact_gaussian_sample(mu1, s1, 400, 3), exact_gaussian_sample(mu2, s2, 300, 4)
    root = sqrtm_psd(s1)
    expected = (mu1 - mu2).square().sum() + torch.trace(s1 + s2 - 2 * sqrtm_psd(root @ s2 @ root))
    assert_close(
        torch.tensor(frechet_distance(real, fake, chunk=64), dtype=torch.float64),
        expected,
        rtol=1e-6,
        atol=1e-8,
    )


def test_fid_of_a_set_against_itself_is_zero():
    x = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert_close(torch.tensor(frechet_distance(x, x)), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_kid_equals_the_unbiased_polynomial_mmd():
    gen = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(40, 3, generator=gen, dtype=torch.float64),
        torch.randn(40, 3, generator=gen, dtype=torch.float64) + 0.5,
    )
    m, d = 40, 3

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = (kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean()
    # Subsets of the full size are permutations: every subset gives the same value.
    out = kernel_distance(x, y, subsets=3, subset_size=m)
    assert_close(torch.tensor(out["kid"], dtype=torch.float64), mmd, rtol=1e-9, atol=1e-12)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-12)


def test_classifier_score_counts_confidently_separated_classes():
    labels = torch.arange(10).repeat(20)
    confident = 50.0 * torch.nn.functional.one_hot(labels, 10).double()
    assert classifier_score(confident, splits=1)["score"] == pytest.approx(10.0, rel=1e-6)
    one_class = 50.0 * torch.nn.functional.one_hot(torch.zeros(200, dtype=torch.long), 10).double()
    assert classifier_score(one_class, splits=1)["score"] == pytest.approx(1.0, rel=1e-9)


# --- Parzen window ---------------------------------------------------------------------------


def test_parzen_with_one_centre_is_the_gaussian_log_density():
    gen = torch.Generator().manual_seed(0)
    centre, x = torch.randn(1, 6, generator=gen), torch.randn(7, 6, generator=gen)
    sigmas = torch.tensor([0.3, 1.0], dtype=torch.float64)
    ll = parzen_log_likelihood(x, centre, sigmas)
    for i, sigma in enumerate(sigmas):
        expected = torch.distributions.Normal(centre.double(), sigma).log_prob(x.double()).sum(1)
        assert_close(ll[i], expected)


def test_parzen_is_the_equal_weight_gaussian_mixture_in_any_chunking():
    gen = torch.Generator().manual_seed(1)
    centres, x = torch.rand(13, 4, 2, generator=gen), torch.rand(9, 4, 2, generator=gen)
    sigma = 0.2
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(13, dtype=torch.float64)),
        torch.distributions.Independent(
            torch.distributions.Normal(centres.flatten(1).double(), sigma), 1
        ),
    )
    expected = mix.log_prob(x.flatten(1).double())
    assert_close(parzen_log_likelihood(x, centres, [sigma])[0], expected)
    assert_close(parzen_log_likelihood(x, centres, [sigma], x_chunk=2, centre_chunk=3)[0], expected)


def test_sigma_selection_and_standard_error():
    # One centre at 0, points at squared distance d * 0.25: the likelihood peaks at sigma = 0.5.
    d = 4
    x = torch.full((3, d), 0.5)
    sigma, means = select_sigma(
        x, torch.zeros(1, d), torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    )
    assert sigma == pytest.approx(0.5)
    assert int(means.argmax()) == 1
    assert mean_and_standard_error(torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        (2.5, math.sqrt(1.25) / 2)
    )
    assert_close(goodfellow_sigmas(), torch.logspace(-1, 0, 10, dtype=torch.float64))


# --- 2D mixtures and mode histograms ---------------------------------------------------------


def test_mode_statistics_on_constructed_samples():
    modes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    std = 0.01
    near = torch.cat([modes[0] + 0.02 * torch.ones(60, 2) / math.sqrt(2), modes[1].expand(20, 2)])
    far = torch.zeros(20, 2)  # distance 1 from every mode: not of high quality
    stats = mode_statistics(torch.cat([near, far]), modes, std)
    assert int(stats["modes"]) == 2
    assert float(stats["high_quality"]) == pytest.approx(80.0)
    assert stats["counts"].tolist() == [60, 20, 0, 0]
    # p = (3/4, 1/4, 0, 0) against uniform over 4 modes.
    expected = 0.75 * math.log(0.75 * 4) + 0.25 * math.log(0.25 * 4)
    assert float(stats["reverse_kl"]) == pytest.approx(expected, rel=1e-6)
    # 60 samples 0.02 / sqrt(2) off in each coordinate, 20 on their mode.
    assert float(stats["hq_std"]) == pytest.approx(math.sqrt(60 * 0.0002 / 80), rel=1e-5)
    everywhere = mode_statistics(modes.repeat(5, 1), modes, std)
    assert (int(everywhere["modes"]), float(everywhere["reverse_kl"])) == (
        4,
        pytest.approx(0.0, abs=1e-7),
    )
    assert math.isinf(float(mode_statistics(far, modes, std)["reverse_kl"]))
    assert math.isnan(float(mode_statistics(far, modes, std)["hq_std"]))


def test_kl_to_uniform():
    assert float(kl_to_uniform(torch.tensor([5, 5, 0, 0]))) == pytest.approx(math.log(2))
    assert float(kl_to_uniform(torch.tensor([7] + [0] * 999))) == pytest.approx(
        math.log(1000), rel=1e-6
    )


# --- precision / recall, density / coverage --------------------------------------------------


def test_precision_recall_density_coverage_on_identical_and_disjoint_sets():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x, k=3, chunk=64) == {"precision": 1.0, "recall": 1.0}
    assert density_coverage(x, x, k=5, chunk=64)["coverage"] == 1.0
    far = x + 1000.0
    assert precision_recall(x, far, k=3) == {"precision": 0.0, "recall": 0.0}
    assert density_coverage(x, far, k=5) == {"density": 0.0, "coverage": 0.0}


def test_manifold_metrics_on_a_constructed_case():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])  # 1-NN radius 1 everywhere
    fake = torch.tensor([[0.5], [10.0]])  # 1-NN radius 9.5 each
    assert_close(knn_radii(real, 1), torch.ones(5, dtype=torch.float64))
    for chunk in (1, 2, 100):
        # 0.5 lies in the balls of 0 and 1; 10 in none; every real point is within 9.5 of 0.5.
        assert precision_recall(real, fake, k=1, chunk=chunk) == {"precision": 0.5, "recall": 1.0}
        assert density_coverage(real, fake, k=1, chunk=chunk) == {"density": 1.0, "coverage": 0.4}
    with pytest.raises(ValueError, match="nearest_k=5"):
        knn_radii(real, 5)


# --- reconstruction --------------------------------------------------------------------------


def test_reconstruction_errors_of_exact_and_shifted_reconstructions():
    x = 0.5 * torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    exact = reconstruction_errors(lambda t: t, [x[:4], x[4:]], (0.0, 1.0))
    assert exact == {"l1": 0.0, "mse": 0.0, "ssim": pytest.approx(1.0)}
    shifted = reconstruction_errors(lambda t: t + 0.1, [x], (0.0, 1.0))
    assert (shifted["l1"], shifted["mse"]) == (pytest.approx(0.1), pytest.approx(0.01))
    # [-1, 1] data is compared in [0, 1]: a shift of 0.2 there is 0.1 here.
    signed = reconstruction_errors(lambda t: t + 0.2, [2 * x - 1], (-1.0, 1.0))
    assert signed["l1"] == pytest.approx(0.1)
    points = reconstruction_errors(lambda t: t + 1.0, [torch.zeros(5, 2)], None, images=False)
    assert points == {"l1": 1.0, "mse": 1.0}


# --- the domain classifier -------------------------------------------------------------------


def test_domain_classifier_reaches_high_accuracy_on_real_mnist(shared_data):
    from torchvision import datasets

    train = datasets.MNIST(shared_data, train=True)
    test = datasets.MNIST(shared_data, train=False)
    x, y = train.data[:4000].float().div(255).unsqueeze(1), train.targets[:4000]
    x_test, y_test = test.data[:1000].float().div(255).unsqueeze(1), test.targets[:1000]
    torch.manual_seed(0)
    net = train_classifier(x, y, ConvClassifier(), epochs=2, batch_size=64)
    assert accuracy(net, x_test, y_test) >= 0.95


def test_domain_classifier_is_trained_once_and_cached(fake_mnist, tmp_path, monkeypatch):
    from ganzoo.data import MNISTDataModule

    dm = MNISTDataModule(fake_mnist, val_size=64, num_workers=0)
    net, record = load_or_train_classifier(dm, tmp_path / "cache", epochs=1)
    files = sorted(p.name for p in (tmp_path / "cache" / "domain_classifiers").iterdir())
    assert files == [f"MNIST-{record['key']}.json", f"MNIST-{record['key']}.pt"]
    assert record["num_train"] == 192 and record["num_test"] == 64
    assert record["weights_sha256"] == sha256_file(record["weights"])
    x_test, y_test = labelled_tensors(dm.test_set, dm.value_range)
    assert record["test_accuracy"] == pytest.approx(accuracy(net, x_test, y_test))
    # Same data and recipe elsewhere: the same weights, byte for byte.
    assert (
        load_or_train_classifier(dm, tmp_path / "elsewhere", epochs=1)[1]["weights_sha256"]
        == (record["weights_sha256"])
    )

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr("ganzoo.metrics.domain.train_classifier", no_training)
    again, cached = load_or_train_classifier(dm, tmp_path / "cache", epochs=1)
    assert cached["key"] == record["key"]
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train_classifier(dm, tmp_path / "cache", epochs=2)  # another recipe, another key
    with pytest.raises(ValueError, match="inside the data directory"):
        load_or_train_classifier(dm, fake_mnist / "cache", epochs=1)


def test_channelwise_domain_features_give_joint_digit_log_probabilities():
    from ganzoo.metrics.domain import DomainFeatures

    features = DomainFeatures()
    features.classifier = ConvClassifier().eval()
    features.channelwise, features.channels = True, 3
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    feats, joint = features(x)
    assert feats.shape == (4, 3 * 128) and joint.shape == (4, 1000)
    assert_close(joint.logsumexp(1), torch.zeros(4), atol=1e-5, rtol=0)
    digits = [features.classifier(x[:, c : c + 1]).argmax(1) for c in range(3)]
    assert joint.argmax(1).tolist() == (100 * digits[0] + 10 * digits[1] + digits[2]).tolist()
    assert features.num_classes == 1000


# --- Inception ---------------------------------------------------------------------------------


class _Ctx:
    """The little of an EvalContext that a feature network's ``prepare`` reads."""

    device = torch.device("cpu")


def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(
        "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", refuse
    )


def test_missing_inception_weights_say_how_to_supply_them(monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(
        InceptionWeightsError, match=r"metrics\.inception\.features\.weights_path=<path>"
    ) as err:
        InceptionFeatures().prepare(_Ctx())
    assert "weights-inception-2015-12-05-6726825d.pth" in str(err.value)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(InceptionWeightsError, match=f"weights_path={missing} does not exist"):
        InceptionFeatures(weights_path=missing).prepare(_Ctx())


def test_inception_features_from_a_local_weights_file(monkeypatch, tmp_path):
    """The local-weights route end to end, with randomly initialised weights of the right shapes."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchmetrics.image.fid import NoTrainInceptionV3

    with monkeypatch.context() as m:
        m.setattr(
            "torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url",
            lambda *a, **k: {},
        )
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        random_net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(random_net.state_dict(), weights)
    _offline(monkeypatch, tmp_path)  # the download must not be needed

    features = InceptionFeatures(weights_path=weights)
    features.prepare(_Ctx())
    feats, logits = features(torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    protocol = features.protocol()
    assert protocol["weights_sha256"] == sha256_file(weights) and protocol["weights"] == str(
        weights
    )
    with pytest.raises(InceptionWeightsError, match="is not torch-fidelity's Inception weights"):
        torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pth")
        InceptionFeatures(weights_path=tmp_path / "wrong.pth").prepare(_Ctx())
