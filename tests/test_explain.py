import torch

from deepprior.explain import check_mean_shift, kde_mean_shift, spiral_samples


def test_kde_mean_shift_is_scaled_score():
    """m(x) = σ²∇log(g_σ * p)(x) (DAEP eq. 6), checked with autograd on the KDE."""
    s = spiral_samples(200)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3]], requires_grad=True)
    sigma = 0.4
    logp = torch.logsumexp(-torch.cdist(x, s) ** 2 / (2 * sigma ** 2), dim=1).sum()
    (grad,) = torch.autograd.grad(logp, x)
    assert torch.allclose(kde_mean_shift(x.detach(), s, sigma), sigma ** 2 * grad, atol=1e-5)


def test_trained_dae_residual_matches_mean_shift(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLP: one thread is faster than two
    try:
        res = check_mean_shift(steps=1500, png=str(tmp_path / "ms.png"))
    finally:
        torch.set_num_threads(threads)
    assert res.cosine > 0.9 and res.relative_error < 0.35
    assert (tmp_path / "ms.png").stat().st_size > 10_000
    untrained = check_mean_shift(steps=1)
    assert untrained.cosine < 0.5
