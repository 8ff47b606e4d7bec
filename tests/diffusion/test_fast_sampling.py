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
from cellsynth.diffusion.categorical import ar1_process, coupled_categorical, inverse_cdf_draw
from cellsynth.diffusion.discrete import GraphDiffusion
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
@example(n=9, seed=781, steps=4)  # 1.6e-9 absolute on a probability of 5.4e-4 (3e-6 relative)
@example(n=10, seed=228, steps=6)  # 2.6e-8 absolute on a probability of 0.016 (1.6e-6 relative)
def test_batched_reverse_step_equals_the_formula(n, seed, steps):
    """All tokens at one step (the dense, cached path: at least N tokens) and one step per token (the
    eigenbasis per token) both give the formula's probabilities, rows summing to 1. Tolerances: the
    eigenbasis of a non-symmetric rate matrix and scipy's Pade expm agree to about 1e-7 relative on the
    large entries and a few 1e-8 absolute on small ones (hypothesis found 1.6e-7 relative at seed 9,
    1.6e-9 absolute at seed 781 and 2.6e-8 absolute at seed 228), far below what a wrong formula moves
    (1e-2 and more)."""
    diff = GraphDiffusion(sparse_rate(n, seed), steps=steps)
    g = torch.Generator().manual_seed(seed)
    m = 3 * n  # >= N tokens: the dense path
    l_s = torch.randint(0, n, (m,), generator=g)
    logits = 2 * torch.randn(m, n, generator=g, dtype=torch.float64)
    for s in range(1, steps + 1):
        for s_to in {0, s - 1}:
            batched = diff.reverse_probs(l_s, logits, s, s_to=s_to)
            reference = reference_reverse_probs(diff, l_s.numpy(), logits.numpy(), s, s_to)
            np.testing.assert_allclose(batched.numpy(), reference, rtol=1e-6, atol=5e-8)
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


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 40),
    spread=st.floats(0.5, 4.0),
    power=st.integers(1, 12),
    scale=st.sampled_from([1.0, 1e-38, 1e-44, 1e30, 0.0]),
)
def test_float32_pruned_gumbel_argmax_is_the_full_argmax(seed, n, spread, power, scale):
    """In float32 too, the argmax over every entry (scores in float64 on the same float32 inputs), whatever
    the weights' scale: subnormal rows (every entry a candidate), rows near float32's largest number (bounds
    that overflow to inf) and rows of zeros."""
    g = torch.Generator().manual_seed(seed)
    p = (torch.rand(64, 7, n, generator=g, dtype=torch.float64) ** power).float()
    p[p < 0.01] = 0.0
    p = p * scale
    z = spread * torch.randn(p.shape, generator=g, dtype=torch.float32)
    full = (p.double().log() + gaussian_gumbel(z.double())).argmax(-1)
    assert torch.equal(gumbel_argmax(p, z), full)


def test_pruned_gumbel_argmax_takes_one_dtype():
    p = torch.full((2, 3), 0.5, dtype=torch.float32)
    with pytest.raises(TypeError, match="must both be float32 or both float64"):
        gumbel_argmax(p, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="must both be float32 or both float64"):
        gumbel_argmax(p.half(), torch.zeros(2, 3, dtype=torch.float16))


def test_pruned_gumbel_argmax_breaks_ties_as_argmax_does():
    """Equal scores in a row: the lowest index, as argmax over the full row."""
    p = torch.tensor([[0.25, 0.5, 0.25, 0.5]], dtype=torch.float64)
    z = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    assert gumbel_argmax(p, z).tolist() == (p.log() + gaussian_gumbel(z)).argmax(-1).tolist()


def sequential_ar1(e: torch.Tensor, rho: float) -> torch.Tensor:
    """The recursion written out: ``z_0 = e_0``, ``z_t = rho z_{t-1} + sqrt(1 - rho^2) e_t`` along dim 0."""
    z = e.clone()
    for t in range(1, len(z)):
        z[t] = rho * z[t - 1] + np.sqrt(1 - rho**2) * z[t]
    return z


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 100),
    width=st.integers(1, 5),
    rho=st.one_of(st.sampled_from([0.0, 1.0, 0.995]), st.floats(0.0, 1.0)),
    seed=st.integers(0, 1000),
)
def test_blocked_ar1_process_is_the_recursion(steps, width, rho, seed):
    """Blocks of 32 steps with a carry between them (any T, including those not a multiple of 32) give the
    sequential recursion up to float64 rounding, and leave the innovations as they were."""
    e = torch.randn(steps, width, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kept = e.clone()
    np.testing.assert_allclose(
        ar1_process(e, rho).numpy(), sequential_ar1(e, rho).numpy(), rtol=0, atol=1e-12
    )
    assert torch.equal(e, kept)


def test_ar1_process_has_unit_variance_and_geometric_correlation():
    """Stationary: variance 1 at every step, lag-d correlation rho^d, in float32 as in the draw."""
    e = torch.randn(64, 20_000, generator=torch.Generator().manual_seed(3))
    z = ar1_process(e, 0.9).double()
    assert torch.allclose(z.var(1), torch.ones(64, dtype=torch.float64), atol=0.05)
    for lag in (1, 5, 33):
        corr = (z[lag:] * z[:-lag]).mean(1).mean()
        assert abs(float(corr) - 0.9**lag) < 0.02


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_coupled_draws_are_unchanged_by_the_pruning(dtype):
    """coupled_categorical draws what the straightforward Gumbel-max on the same noise draws: float32
    normals from the same generator, in time-first order, the recursion in the weights' dtype."""
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(3 * torch.randn(6, 70, 20, generator=g, dtype=torch.float64), -1).to(dtype)
    drawn = coupled_categorical(probs, 0.9, torch.Generator().manual_seed(11))
    e = torch.randn((70, 6, 20), generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    z = sequential_ar1(e.double(), 0.9).to(dtype).double()
    reference = (probs.movedim(-2, 0).double().log() + gaussian_gumbel(z)).argmax(-1).movedim(0, -1)
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


# -- the shared step: every token at one step, float32 weights (what sampling uses) --------------------------


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 12), seed=st.integers(0, 10_000), steps=st.integers(2, 6), spread=st.floats(0.5, 6.0))
def test_shared_step_weights_are_the_reverse_step_in_float32(n, seed, steps, spread):
    """Normalised, the float32 weights of the shared step are reverse_probs' float64 probabilities to
    float32 rounding (a wrong formula moves them by 1e-2 and more), for every step and jump to 0, on a sparse
    graph whose early steps leave candidates out."""
    diff = GraphDiffusion(sparse_rate(n, seed), steps=steps)
    g = torch.Generator().manual_seed(seed)
    l_s = torch.randint(0, n, (4, n), generator=g)  # 4 n tokens: at least N
    logits = spread * torch.randn(4, n, n, generator=g)
    for s in range(1, steps + 1):
        for s_to in {0, s - 1}:
            weights = diff._shared_step_weights(l_s, logits, s, s_to)
            assert weights.dtype == torch.float32 and weights.shape == (4, n, n)
            assert (weights >= 0).all() and (weights.sum(-1) > 0).all()
            reference = diff.reverse_probs(l_s, logits.double(), s, s_to=s_to)
            normalised = (weights.double() / weights.double().sum(-1, keepdim=True)).numpy()
            np.testing.assert_allclose(normalised, reference.numpy(), rtol=1e-4, atol=1e-6)


def test_shared_step_rows_with_no_reachable_mass_take_reverse_probs_fallback():
    """A token whose predicted l_0 puts all its mass (to float32 underflow) on candidates that cannot have
    produced l_s gets reverse_probs' own row (the uniform-l_0 posterior, or the tiny reachable mass that
    float64 still holds); the other rows are untouched."""
    n = 30
    rate = np.zeros((n, n))
    rate[np.arange(n - 1), np.arange(1, n)] = 1.0
    rate = rate + rate.T
    rate -= np.diag(rate.sum(1))  # a path: early on, far states are unreachable
    diff = GraphDiffusion(rate, abar=[0.05, 0.1, 0.3], floor=1e-6)
    l_s = torch.zeros(2 * n, dtype=torch.long)
    logits = torch.zeros(2 * n, n)
    logits[0] = -2000.0
    logits[0, n // 2] = 0.0  # all on a state 15 hops away: unreachable at alpha-bar 0.1
    logits[1] = -150.0  # reachable states keep e^-150 in float64, 0 in float32
    logits[1, n // 2] = 0.0
    weights = diff._shared_step_weights(l_s, logits, 2, 1)
    reference = diff.reverse_probs(l_s, logits.double(), 2)
    for row in (0, 1):
        np.testing.assert_allclose(weights[row].numpy(), reference[row].numpy(), rtol=1e-6, atol=1e-12)
    assert weights[0].argmax() != n // 2 and weights[0, 0] > 0.5  # the fallback stays near l_s
    normalised = weights[2:].double() / weights[2:].double().sum(-1, keepdim=True)
    np.testing.assert_allclose(normalised.numpy(), reference[2:].numpy(), rtol=1e-4, atol=1e-6)


def test_sample_step_takes_the_shared_step_only_when_it_applies(monkeypatch):
    """Plain-integer steps and at least N tokens: the shared step. A step per token, or fewer tokens than
    states: reverse_probs, as before (those draws are unchanged bit for bit)."""
    diff = GraphDiffusion(sparse_rate(8, 4), steps=5)
    taken = []
    shared, full = diff._shared_step_weights, diff.reverse_probs
    monkeypatch.setattr(diff, "_shared_step_weights", lambda *a: taken.append("shared") or shared(*a))
    monkeypatch.setattr(diff, "reverse_probs", lambda *a, **k: taken.append("full") or full(*a, **k))
    g = torch.Generator().manual_seed(0)
    many, few = torch.randint(0, 8, (3, 8), generator=g), torch.randint(0, 8, (1, 5), generator=g)
    diff.sample_step(many, torch.randn(3, 8, 8), 3, g)
    diff.sample_step(many, torch.randn(3, 8, 8), torch.tensor(3), g, s_to=0)
    diff.sample_step(many, torch.randn(3, 8, 8), torch.tensor([3, 3, 2]), g)
    diff.sample_step(few, torch.randn(1, 5, 8), 3, g)
    assert taken == ["shared", "shared", "full", "full"]
    with pytest.raises(ValueError, match="steps must be in 1..5"):
        diff.sample_step(many, torch.randn(3, 8, 8), 6, g)
    with pytest.raises(ValueError, match="s_to must be below s"):
        diff.sample_step(many, torch.randn(3, 8, 8), 3, g, s_to=3)


@pytest.mark.parametrize("coupling", [0.0, 0.9])
def test_shared_step_draws_follow_the_reverse_step(coupling):
    """Drawn through the shared step, each token's frequencies are reverse_probs' row: 20,000 draws of 8
    tokens, uncoupled (inverse CDF in float32) and coupled."""
    diff = GraphDiffusion(sparse_rate(7, 8), steps=5)
    l_s = torch.tensor([0, 0, 3, 3, 6, 2, 5, 1]).expand(20_000, 8)
    logits = 1.5 * torch.randn(7, 7, generator=torch.Generator().manual_seed(3))[l_s]  # one row per l_s
    expected = diff.reverse_probs(l_s[:1], logits[:1].double(), 4, s_to=2)[0].numpy()
    draws = diff.sample_step(l_s, logits, 4, torch.Generator().manual_seed(4), s_to=2, coupling=coupling)
    freq = np.stack([np.bincount(draws[:, t].numpy(), minlength=7) / len(draws) for t in range(8)])
    assert np.abs(freq - expected).max() < 0.02  # 5.7 sd of a frequency over 20,000 draws at worst
    assert (freq[expected == 0] == 0).all()


def test_float32_inverse_cdf_draws_unnormalised_weights_and_never_a_zero():
    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([[0.0, 3.0, 0.0, 1.0], [2.0, 0.0, 0.0, 0.0]], dtype=torch.float32).repeat(
        20_000, 1
    )
    draws = inverse_cdf_draw(weights, g).reshape(20_000, 2)
    assert set(draws[:, 0].tolist()) == {1, 3} and set(draws[:, 1].tolist()) == {0}
    assert abs(float((draws[:, 0] == 1).double().mean()) - 0.75) < 0.015


def test_inverse_cdf_never_draws_a_leading_zero_when_the_target_underflows():
    """Totals so small that u * total underflows to 0 in float32 (half the draws of a total of 1e-45) still
    land on a state with weight, never on the zero-weight state 0."""
    weights = torch.tensor([[0.0, 1e-45, 0.0, 0.0], [0.0, 1e-40, 0.0, 1e-40]], dtype=torch.float32)
    draws = inverse_cdf_draw(weights.repeat(2_000, 1), torch.Generator().manual_seed(1)).reshape(2_000, 2)
    assert set(draws[:, 0].tolist()) == {1} and set(draws[:, 1].tolist()) <= {1, 3}


@pytest.mark.parametrize("coupling", [0.0, 0.9])
def test_shared_step_in_chunks_of_sequences_draws_each_chunk_as_a_whole(monkeypatch, coupling):
    """The shared step draws chunks of whole sequences one after the other from one generator. Uncoupled, the
    chunks give the one-piece draw bit for bit (the inverse-CDF uniforms come out of the generator in the
    same order); coupled, each chunk is coupled_categorical of its own weights, and chunks of one sequence
    change only which noise each sequence gets."""
    import cellsynth.diffusion.categorical as categorical

    diff = GraphDiffusion(sparse_rate(8, 4), steps=5)
    g = torch.Generator().manual_seed(0)
    l_s = torch.randint(0, 8, (5, 2, 7), generator=g)  # 10 sequences of 7 tokens
    logits = torch.randn(5, 2, 7, 8, generator=g)
    whole = diff.sample_step(l_s, logits, 3, torch.Generator().manual_seed(1), coupling=coupling)
    monkeypatch.setattr(categorical, "CHUNK_ENTRIES", 3 * 7 * 8)  # three sequences a chunk: 3, 3, 3, 1
    chunked = diff.sample_step(l_s, logits, 3, torch.Generator().manual_seed(1), coupling=coupling)
    assert chunked.shape == l_s.shape
    sequences, rows = l_s.reshape(10, 7), logits.reshape(10, 7, 8)
    weights = [diff._shared_step_weights(sequences[i : i + 3], rows[i : i + 3], 3, 2) for i in (0, 3, 6, 9)]
    gen = torch.Generator().manual_seed(1)
    if coupling == 0:
        assert torch.equal(chunked, whole)
        expected = inverse_cdf_draw(torch.cat(weights), torch.Generator().manual_seed(1))
    else:
        expected = torch.cat([coupled_categorical(w, coupling, gen) for w in weights])
    assert torch.equal(chunked.reshape(10, 7), expected)


@pytest.mark.parametrize("users", [1, 6])
def test_sample_step_temperature_is_dividing_the_logits(users):
    """temperature=T draws what logits / T draw, on the shared step (in chunks) and on the per-token one."""
    diff = GraphDiffusion(sparse_rate(8, 4), steps=5)
    g = torch.Generator().manual_seed(users)
    l_s = torch.randint(0, 8, (users, 7), generator=g)
    logits = 3 * torch.randn(users, 7, 8, generator=g)
    for coupling in (0.0, 0.9):
        for s in (3, torch.full((users,), 3)):  # one step for all (shared), one per user
            cold = diff.sample_step(
                l_s, logits, s, torch.Generator().manual_seed(0), coupling=coupling, temperature=0.5
            )
            divided = diff.sample_step(
                l_s, logits / 0.5, s, torch.Generator().manual_seed(0), coupling=coupling
            )
            assert torch.equal(cold, divided)
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            diff.sample_step(l_s, logits, 3, g, temperature=bad)


def test_coupled_draw_takes_half_precision_and_empty_batches():
    """float16 and bfloat16 weights are drawn in float64 (the same draw as float64 weights of the same
    values); an empty batch gives an empty draw; a zero-probability state is never drawn."""
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 40, 6, generator=g, dtype=torch.float64).to(torch.bfloat16)
    probs[..., 2] = 0
    for dtype in (torch.float16, torch.bfloat16):
        half = probs.to(dtype)
        drawn = coupled_categorical(half, 0.9, torch.Generator().manual_seed(1))
        assert torch.equal(drawn, coupled_categorical(half.double(), 0.9, torch.Generator().manual_seed(1)))
        assert not (drawn == 2).any()
    empty = coupled_categorical(torch.rand(0, 40, 6), 0.9, g)
    assert empty.shape == (0, 40) and empty.dtype == torch.long


def test_shared_step_refuses_logits_of_another_shape_with_as_many_entries():
    """The chunked step reshapes the logits: a [B, T * N] tensor (the same number of entries) is refused,
    not read as [B, T, N]."""
    diff = GraphDiffusion(sparse_rate(8, 4), steps=5)
    l_s = torch.zeros(3, 7, dtype=torch.long)
    with pytest.raises(ValueError, match=r"logits must have shape \(3, 7, 8\)"):
        diff.sample_step(l_s, torch.randn(3, 56), 3)


def test_ar1_process_of_a_transposed_tensor():
    e = torch.randn(5, 40, dtype=torch.float64).T  # [40, 5], not contiguous: time along dim 0
    np.testing.assert_allclose(ar1_process(e, 0.8).numpy(), sequential_ar1(e, 0.8).numpy(), atol=1e-12)
