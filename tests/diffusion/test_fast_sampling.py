"""The fast paths of the discrete reverse step against straightforward references: the cached dense
``exp(t R)`` (cellsynth.diffusion.spectral) and the pruned Gumbel-max (cellsynth.diffusion.gumbel)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cellsynth.diffusion import spectral
from cellsynth.diffusion.discrete import GraphDiffusion, coupled_categorical
from cellsynth.diffusion.gumbel import gaussian_gumbel, gumbel_argmax


def sparse_rate(n: int, seed: int) -> np.ndarray:
    """A connected graph (a path plus random links) as a symmetric rate matrix with rows summing to 0."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.01, 1.0, (n, n)) * (rng.random((n, n)) < 0.3)
    w[np.arange(n - 1), np.arange(1, n)] = rng.uniform(0.05, 1.0, n - 1)
    w = np.triu(w, 1)
    w = w + w.T
    return w - np.diag(w.sum(1))


def reference_reverse_probs(diff: GraphDiffusion, l_s: np.ndarray, logits: np.ndarray, s: int, s_to: int):
    """The reverse step written out with scipy's expm, as the module docstring states it:
    ``p = Q_{s'->s}[l_s, :] * (w @ Q-bar_{s'})``, ``w = p_theta / Q-bar_s[:, l_s]`` over candidates above the
    floor, normalised."""
    expm = lambda t: scipy.linalg.expm(t * diff.rate)  # noqa: E731
    qbar_s, qbar_to, jump = expm(diff.abar[s]), expm(diff.abar[s_to]), expm(diff.abar[s] - diff.abar[s_to])
    p0 = np.exp(logits - logits.max(-1, keepdims=True))
    p0 /= p0.sum(-1, keepdims=True)
    out = np.empty_like(p0)
    for i, k in enumerate(l_s):
        den = qbar_s[:, k]
        valid = den > diff.floor
        w = np.where(valid, p0[i] / np.where(valid, den, 1.0), 0.0)
        num = jump[k] * (w @ qbar_to)
        out[i] = num / num.sum()
    return out


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 12), seed=st.integers(0, 10_000), steps=st.integers(2, 6))
@example(n=9, seed=9, steps=6)  # the worst agreement hypothesis has found (1.6e-7 relative)
@example(n=9, seed=9, steps=4)
def test_batched_reverse_step_equals_the_formula(n, seed, steps):
    """All tokens at one step (the dense, cached path: at least N tokens) and one step per token (the
    eigenbasis per token) both give the formula's probabilities, rows summing to 1. Tolerances: the
    eigenbasis of a non-symmetric rate matrix and scipy's Pade expm agree to about 1e-7 relative at worst
    (hypothesis found 1.6e-7 at n=9), far below what a wrong formula moves (1e-2 and more)."""
    diff = GraphDiffusion(sparse_rate(n, seed), steps=steps)
    g = torch.Generator().manual_seed(seed)
    m = 3 * n  # >= N tokens: the dense path
    l_s = torch.randint(0, n, (m,), generator=g)
    logits = 2 * torch.randn(m, n, generator=g, dtype=torch.float64)
    for s in range(1, steps + 1):
        for s_to in {0, s - 1}:
            batched = diff.reverse_probs(l_s, logits, s, s_to=s_to)
            reference = reference_reverse_probs(diff, l_s.numpy(), logits.numpy(), s, s_to)
            np.testing.assert_allclose(batched.numpy(), reference, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(batched.sum(-1).numpy(), 1.0, atol=1e-12)
            # one token per step value: s per token differs (the first token one step higher), so the rows
            # go through the eigenbasis per token; the other rows must not change
            per_token_s = torch.full((m,), s)
            per_token_s[0] = min(s + 1, steps)
            per_token = diff.reverse_probs(l_s, logits, per_token_s, s_to=torch.full((m,), s_to))
            torch.testing.assert_close(per_token[1:], batched[1:], atol=1e-9, rtol=1e-7)


def test_dense_rows_are_the_per_token_rows_and_exact_at_zero():
    diff = GraphDiffusion(sparse_rate(9, 3), steps=4)
    basis = diff._basis("cpu")
    idx = torch.arange(9).repeat(3)
    for t in (0.0, float(diff.abar[2]), float(diff.abar[4])):
        times = torch.full((idx.numel(),), t, dtype=torch.float64)
        dense = basis.rows(idx, times, 9)
        times_varied = times.clone()
        times_varied[-1] = t + 1.0  # breaks the shared time: per-token rows
        per_token = basis.rows(idx, times_varied, 9)
        torch.testing.assert_close(dense[:-1], per_token[:-1], atol=1e-13, rtol=0)
        np.testing.assert_allclose(
            dense.numpy(), np.clip(scipy.linalg.expm(t * diff.rate), 0, None)[idx], atol=1e-12
        )
        w = torch.rand(idx.numel(), 9, dtype=torch.float64)
        np.testing.assert_allclose(
            basis.times(w, times, 9).numpy(), w.numpy() @ scipy.linalg.expm(t * diff.rate), atol=1e-12
        )
    assert torch.equal(
        basis.rows(idx, torch.zeros(idx.numel(), dtype=torch.float64), 9)[:9], torch.eye(9).double()
    )


def test_dense_cache_keeps_within_its_memory(monkeypatch):
    """Each time's matrix is built once and reused; the least recently used go once the cache is full."""
    n = 10
    monkeypatch.setattr(spectral, "CACHE_BYTES", 3 * n * n * 8)
    basis = GraphDiffusion(sparse_rate(n, 1), steps=8)._basis("cpu")
    first = basis.matrix(0.5, n)
    assert basis.matrix(0.5, n) is first
    for t in (1.0, 2.0, 3.0, 4.0):
        basis.matrix(t, n)
    assert list(basis._dense) == [(2.0, n), (3.0, n), (4.0, n)]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000), n=st.integers(1, 40), spread=st.floats(0.5, 4.0), power=st.integers(1, 12)
)
def test_pruned_gumbel_argmax_is_the_full_argmax(seed, n, spread, power):
    """Bit for bit the argmax of log p + G(z) over every entry, zeros in p included (never drawn)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(64, 7, n, generator=g, dtype=torch.float64) ** power
    p[p < 0.01] = 0.0
    z = spread * torch.randn(p.shape, generator=g, dtype=torch.float64)
    full = (p.log() + gaussian_gumbel(z)).argmax(-1)
    assert torch.equal(gumbel_argmax(p, z), full)


def test_pruned_gumbel_argmax_off_the_grid_and_all_zero_rows():
    """z beyond the table (|z| > 16) still gives the full argmax; a row of zeros gives 0, as argmax does."""
    p = torch.tensor([[0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[40.0, 0.0, 50.0], [-30.0, -17.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    assert gumbel_argmax(p, z).tolist() == [0, 1, 0]


def test_coupled_draws_are_unchanged_by_the_pruning():
    """coupled_categorical draws what the straightforward Gumbel-max on the same noise draws."""
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(3 * torch.randn(6, 30, 20, generator=g, dtype=torch.float64), -1)
    drawn = coupled_categorical(probs, 0.9, torch.Generator().manual_seed(11))
    # the reference: the same noise (same generator, same shape and order), the full Gumbel-max
    z = torch.randn((30, 6, 20), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    for t in range(1, 30):
        z[t] = 0.9 * z[t - 1] + np.sqrt(1 - 0.81) * z[t]
    reference = (probs.movedim(-2, 0).log() + gaussian_gumbel(z)).argmax(-1).movedim(0, -1)
    assert torch.equal(drawn, reference)


@pytest.mark.parametrize("users", [3, 40])
def test_strided_chain_step_matches_the_formula_in_a_batch(users):
    """The sampler's case: a strided chain, every token of the batch at one step."""
    diff = GraphDiffusion(sparse_rate(8, 2), steps=10).with_schedule(
        GraphDiffusion(sparse_rate(8, 2), steps=10).abar_at([2, 4, 6, 8, 10])
    )
    g = torch.Generator().manual_seed(users)
    l_s = torch.randint(0, 8, (users, 5), generator=g)
    logits = torch.randn(users, 5, 8, generator=g, dtype=torch.float64)
    probs = diff.reverse_probs(l_s, logits, 3)
    reference = reference_reverse_probs(diff, l_s.reshape(-1).numpy(), logits.reshape(-1, 8).numpy(), 3, 2)
    np.testing.assert_allclose(probs.reshape(-1, 8).numpy(), reference, atol=1e-9)
