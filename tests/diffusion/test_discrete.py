"""GraphDiffusion against brute force: explicit matrices (scipy.linalg.expm), explicit sums over l_0, Bayes'
rule on the enumerated joint, and simulated chains."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cellsynth.diffusion.categorical import coupled_categorical
from cellsynth.diffusion.discrete import (
    GraphDiffusion,
    geometric_schedule,
    mixing_time,
    tv_bound,
    uniform_rate,
)
from cellsynth.errors import ConfigError, DataError

AUTHORS_FINAL_ABAR = 1.97  # where the authors' public code's schedule ends


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: on a shared 2-core machine a second intra-op thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def laplacian_rate(w: np.ndarray) -> np.ndarray:
    w = np.triu(w, 1)
    w = w + w.T
    return w - np.diag(w.sum(1))


def complete_graph(n: int, seed: int) -> np.ndarray:
    """Every pair linked with weight in [0.2, 1]: all entries of every Q-bar are far above the floor, so the
    eigenbasis results must equal brute force to rounding."""
    return laplacian_rate(np.random.default_rng(seed).uniform(0.2, 1.0, (n, n)))


def sparse_graph(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.01, 1.0, (n, n)) * (rng.random((n, n)) < 0.4)
    w[np.arange(n - 1), np.arange(1, n)] = rng.uniform(0.01, 1.0, n - 1)  # a path keeps it connected
    return laplacian_rate(w)


def ring_rate(n: int) -> np.ndarray:
    """B = (A + A^T) / 2K of each station's K = 2 nearest neighbours on a ring."""
    a = np.zeros((n, n))
    i = np.arange(n)
    a[i, (i + 1) % n] = a[i, (i - 1) % n] = 1
    b = (a + a.T) / 4
    return b - np.diag(b.sum(1))


def grid_rate(side: int) -> np.ndarray:
    """K = 4 nearest neighbours on a side x side grid (corners and edges: their 4 nearest, as kNN does)."""
    xy = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2).astype(float)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(side * side) * 1e9
    a = np.zeros_like(d)
    a[np.arange(len(d))[:, None], np.argsort(d, axis=1, kind="stable")[:, :4]] = 1
    b = (a + a.T) / 8
    return b - np.diag(b.sum(1))


def explicit(diff: GraphDiffusion):
    """Q_s and Q-bar_s for s = 0..S by scipy's expm: lists of dense matrices."""
    q = [scipy.linalg.expm(a * diff.rate) for a in diff.alpha]
    qbar = [scipy.linalg.expm(a * diff.rate) for a in diff.abar]
    return q, qbar


def brute_posterior(q, qbar, s):
    """post[l0, l_s, l_{s-1}] by Bayes' rule on the enumerated joint q(l0) q(l_{s-1}|l0) q(l_s|l_{s-1})."""
    joint = qbar[s - 1][:, :, None] * q[s][None, :, :]  # [l0, l_{s-1}, l_s]
    return np.transpose(joint / joint.sum(1, keepdims=True), (0, 2, 1))


schedules = st.lists(st.floats(0.05, 1.5), min_size=1, max_size=4).map(lambda a: np.cumsum(a))


@settings(max_examples=20)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), abar=schedules)
def test_matrices_match_expm_and_compose(n, seed, abar):
    diff = GraphDiffusion(complete_graph(n, seed), abar=abar)
    q, qbar = explicit(diff)
    for s in range(diff.steps + 1):
        qb = diff.transition_matrix(s)
        np.testing.assert_allclose(qb, qbar[s], atol=1e-12)
        np.testing.assert_allclose(diff.transition_matrix(s, cumulative=False), q[s], atol=1e-12)
        np.testing.assert_allclose(qb, qb.T, atol=1e-13)  # reversible w.r.t. uniform: symmetric
        rows = diff.q_probs(torch.arange(n), s).numpy()
        np.testing.assert_allclose(rows, qbar[s], atol=1e-12)
        assert (rows >= 0).all()
        np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-13)
        if s >= 1:  # Chapman-Kolmogorov: Q-bar_s = Q-bar_{s-1} Q_s
            np.testing.assert_allclose(qbar[s - 1] @ q[s], qb, atol=1e-12)


@settings(max_examples=20)
@given(n=st.integers(2, 9), seed=st.integers(0, 10_000), abar=schedules)
def test_probabilities_on_sparse_graphs(n, seed, abar):
    diff = GraphDiffusion(sparse_graph(n, seed), abar=abar)
    g = torch.Generator().manual_seed(seed)
    l0 = torch.randint(0, n, (3, 4), generator=g)
    ls = torch.randint(0, n, (3, 4), generator=g)
    logits = torch.randn(3, 4, n, generator=g)
    for s in range(1, diff.steps + 1):
        for probs in (
            diff.q_probs(l0, s),
            diff.posterior_probs(ls, l0, s),
            diff.reverse_probs(ls, logits, s),
        ):
            assert probs.shape == (3, 4, n) and probs.dtype == torch.float64
            assert (probs >= 0).all()
            torch.testing.assert_close(
                probs.sum(-1), torch.ones(3, 4, dtype=torch.float64), atol=1e-12, rtol=0
            )


@settings(max_examples=20)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), abar=schedules)
def test_posterior_is_bayes_rule(n, seed, abar):
    diff = GraphDiffusion(complete_graph(n, seed), abar=abar)
    q, qbar = explicit(diff)
    l0, ls = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    for s in range(1, diff.steps + 1):
        post = diff.posterior_probs(ls, l0, s).numpy()
        np.testing.assert_allclose(post, brute_posterior(q, qbar, s), atol=1e-11)
        # ... which is the paper's closed form Q_s[l_{s-1}, l_s] Q-bar_{s-1}[l0, l_{s-1}] / Q-bar_s[l0, l_s]
        closed = q[s].T[None, :, :] * qbar[s - 1][:, None, :] / qbar[s][:, :, None]
        np.testing.assert_allclose(post, closed, atol=1e-11)


def test_posterior_depends_on_l_s_unlike_the_authors_code():
    """The authors' code uses q(l_{s-1} | l_0) = Q-bar_{s-1}[l_0] as the "posterior", ignoring l_s. Simulated
    chains l_0 -> l_{s-1} -> l_s show that the true posterior depends on l_s and that ours is it."""
    diff = GraphDiffusion(ring_rate(6), abar=[0.3, 0.8, 1.5])
    s, l0, n_chains = 3, 0, 200_000
    g = torch.Generator().manual_seed(0)
    start = torch.full((n_chains,), l0)
    prev = diff.q_sample(start, s - 1, generator=g)
    # one forward step l_{s-1} -> l_s: rows of Q_s = exp(alpha_s R)
    q_s = torch.as_tensor(diff.transition_matrix(s, cumulative=False))
    cur = torch.multinomial(q_s[prev], 1, generator=g).squeeze(1)
    authors = diff.transition_matrix(s - 1)[l0]
    for ls in (0, 1, 3):
        chosen = prev[cur == ls]
        empirical = np.bincount(chosen.numpy(), minlength=6) / len(chosen)
        ours = diff.posterior_probs(torch.tensor([ls]), torch.tensor([l0]), s)[0].numpy()
        assert np.abs(empirical - ours).sum() / 2 < 0.02, (ls, empirical, ours)
        assert np.abs(authors - ours).sum() / 2 > 0.1  # ignoring l_s is far off


@settings(max_examples=20)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), abar=schedules)
def test_reverse_step_is_the_exact_mixture(n, seed, abar):
    diff = GraphDiffusion(complete_graph(n, seed), abar=abar)
    q, qbar = explicit(diff)
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, n, n, generator=g, dtype=torch.float64)
    ls = torch.arange(n).expand(2, n)
    for s in range(1, diff.steps + 1):
        ours = diff.reverse_probs(ls, logits, s).numpy()
        post = brute_posterior(q, qbar, s)  # [l0, l_s, l_{s-1}]
        p0 = torch.softmax(logits, -1).numpy()  # [b, l_s, l0]
        mixture = np.einsum("bki,ikj->bkj", p0, post)  # sum_{l0} p(l0 | l_s) q(l_{s-1} | l_s, l0)
        np.testing.assert_allclose(ours, mixture, atol=1e-11)


@settings(max_examples=20)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), abar=schedules.filter(lambda a: len(a) >= 2))
def test_jump_over_several_steps_is_the_exact_mixture(n, seed, abar):
    """s_to: p(l_{s'} | l_s) = sum_{l0} p(l0 | l_s) q(l_{s'} | l_s, l0), the posterior by Bayes' rule on the
    joint q(l0) q(l_{s'} | l0) q(l_s | l_{s'}) with q(l_s | l_{s'}) = expm((abar_s - abar_{s'}) R)."""
    diff = GraphDiffusion(complete_graph(n, seed), abar=abar)
    _, qbar = explicit(diff)
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(2, n, n, generator=g, dtype=torch.float64)
    ls = torch.arange(n).expand(2, n)
    p0 = torch.softmax(logits, -1).numpy()  # [b, l_s, l0]
    for s in range(2, diff.steps + 1):
        for s_to in range(s):
            step = scipy.linalg.expm((diff.abar[s] - diff.abar[s_to]) * diff.rate)
            joint = qbar[s_to][:, :, None] * step[None, :, :]  # [l0, l_{s'}, l_s]
            post = np.transpose(joint / joint.sum(1, keepdims=True), (0, 2, 1))  # [l0, l_s, l_{s'}]
            ours = diff.reverse_probs(ls, logits, s, s_to=s_to).numpy()
            np.testing.assert_allclose(ours, np.einsum("bki,ikj->bkj", p0, post), atol=1e-11)
    one_step = diff.reverse_probs(ls, logits, diff.steps)
    torch.testing.assert_close(diff.reverse_probs(ls, logits, diff.steps, s_to=diff.steps - 1), one_step)


def test_jump_equals_the_strided_chains_step_and_keeps_the_forward_marginal():
    """Per token, (s, s_to) is the strided chain's step for that pair. With a perfect denoiser (p_theta = the
    one-hot of l0), drawing l_s ~ q(l_s | l0) then jumping to s' gives l_{s'} ~ q(l_{s'} | l0) exactly."""
    n = 7
    diff = GraphDiffusion(sparse_graph(n, 5), steps=12)
    g = torch.Generator().manual_seed(1)
    ls = torch.randint(0, n, (3, 4), generator=g)
    logits = torch.randn(3, 4, n, generator=g, dtype=torch.float64)
    s = torch.tensor([12, 7, 3])
    s_to = torch.tensor([4, 0, 2])
    ours = diff.reverse_probs(ls, logits, s, s_to=s_to)
    for b in range(3):
        strided = diff.with_schedule(diff.abar[[int(s_to[b]), int(s[b])]][int(s_to[b]) == 0 :])
        step = strided.steps
        torch.testing.assert_close(ours[b], strided.reverse_probs(ls[b], logits[b], step), atol=1e-12, rtol=0)

    perfect = torch.where(torch.eye(n, dtype=torch.bool), 0.0, -torch.inf).to(torch.float64)  # [l0, l0]
    for s_from, target in [(12, 5), (6, 0), (3, 2)]:
        for l0 in range(n):
            forward = diff.q_probs(torch.tensor(l0), s_from)  # q(l_from | l0), [l_from]
            jump = diff.reverse_probs(torch.arange(n), perfect[l0].expand(n, n), s_from, s_to=target)
            np.testing.assert_allclose(
                (forward[:, None] * jump).sum(0).numpy(),
                diff.q_probs(torch.tensor(l0), target).numpy(),
                atol=1e-10,
            )


def test_reverse_step_with_a_perfect_denoiser_is_the_true_reverse_process():
    """If p_theta(l_0 | l_s) is the true posterior of a data distribution pi, p(l_{s-1} | l_s) must be the true
    q(l_{s-1} | l_s) under pi: sum_{l0} pi(l0) Q-bar_{s-1}[l0, l_{s-1}] Q_s[l_{s-1}, l_s] / normaliser."""
    n = 6
    diff = GraphDiffusion(sparse_graph(n, 3), abar=[0.2, 0.6, 1.4, 3.0])
    q, qbar = explicit(diff)
    pi = np.array([0.4, 0.05, 0.2, 0.05, 0.25, 0.05])
    for s in range(1, diff.steps + 1):
        post_l0 = pi[:, None] * qbar[s]  # [l0, l_s]
        post_l0 /= post_l0.sum(0, keepdims=True)
        logits = torch.as_tensor(np.log(post_l0.T))  # [l_s, l0]
        ours = diff.reverse_probs(torch.arange(n), logits, s).numpy()
        joint = (pi @ qbar[s - 1])[:, None] * q[s]  # [l_{s-1}, l_s]
        np.testing.assert_allclose(ours, (joint / joint.sum(0, keepdims=True)).T, atol=1e-10)


@settings(max_examples=20)
@given(n=st.integers(2, 7), seed=st.integers(0, 10_000), abar=schedules)
def test_kl_and_ce_match_brute_force(n, seed, abar):
    diff = GraphDiffusion(complete_graph(n, seed), abar=abar)
    q, qbar = explicit(diff)
    g = torch.Generator().manual_seed(seed)
    l0 = torch.randint(0, n, (2, 5), generator=g)
    ls = torch.randint(0, n, (2, 5), generator=g)
    logits = 2 * torch.randn(2, 5, n, generator=g, dtype=torch.float64)
    p0 = torch.softmax(logits, -1).numpy()
    for s in range(1, diff.steps + 1):
        post = brute_posterior(q, qbar, s)
        kl = diff.kl(l0, ls, logits, s, reduction="none").numpy()
        ce = diff.ce(l0, logits, reduction="none").numpy()
        for b in range(2):
            for t in range(5):
                i, k = int(l0[b, t]), int(ls[b, t])
                true = post[i, k]
                model = p0[b, t] @ post[:, k, :]
                pos = true > 0
                expect = np.sum(true[pos] * np.log(true[pos] / model[pos]))
                assert kl[b, t] == pytest.approx(expect, abs=1e-10)
                assert ce[b, t] == pytest.approx(-np.log(p0[b, t, i]), abs=1e-12)
        assert (
            kl <= ce + 1e-10
        ).all()  # p contains q(.|l_s,l0) with weight p_theta(l0): KL <= -log p_theta(l0)


def test_first_step_is_exact_and_kl_equals_ce_there():
    diff = GraphDiffusion(ring_rate(8), steps=10)
    l0 = torch.tensor([[0, 3, 5]])
    ls = diff.q_sample(l0, 1, generator=torch.Generator().manual_seed(0))
    post = diff.posterior_probs(ls, l0, 1)
    assert torch.equal(post, torch.nn.functional.one_hot(l0, 8).double())
    logits = torch.randn(1, 3, 8, dtype=torch.float64)
    reachable = diff.q_probs(ls, 1) > diff.floor  # Q-bar_1 symmetric: rows of l_s
    expect = torch.softmax(logits, -1) * reachable
    torch.testing.assert_close(diff.reverse_probs(ls, logits, 1), expect / expect.sum(-1, keepdim=True))
    logits[..., :] = -30.0  # the true l0 well predicted, so every l0 candidate left out carries ~0 mass
    logits[0, torch.arange(3), l0[0]] = 30.0
    torch.testing.assert_close(diff.kl(l0, ls, logits, 1), diff.ce(l0, logits), atol=1e-12, rtol=1e-6)
    assert float(diff.kl(l0, ls, logits, 1)) < 1e-20


def test_kl_vanishes_for_a_perfect_prediction_and_has_gradients():
    diff = GraphDiffusion(ring_rate(10), steps=20)
    g = torch.Generator().manual_seed(1)
    l0 = torch.randint(0, 10, (4, 7), generator=g)
    s = diff.random_steps(4, generator=g)
    ls = diff.q_sample(l0, s, generator=g)
    sharp = torch.nn.functional.one_hot(l0, 10).float() * 60.0
    assert float(diff.kl(l0, ls, sharp, s)) < 1e-12
    logits = torch.randn(4, 7, 10, generator=g, requires_grad=True)
    loss = diff.kl(l0, ls, logits, s) + diff.ce(l0, logits)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_per_sequence_steps_broadcast_over_time():
    diff = GraphDiffusion(sparse_graph(7, 0), steps=6)
    g = torch.Generator().manual_seed(2)
    l0 = torch.randint(0, 7, (3, 5), generator=g)
    ls = torch.randint(0, 7, (3, 5), generator=g)
    logits = torch.randn(3, 5, 7, generator=g)
    s = torch.tensor([1, 4, 6])
    for fn in (
        lambda s_: diff.q_probs(l0, s_),
        lambda s_: diff.posterior_probs(ls, l0, s_),
        lambda s_: diff.reverse_probs(ls, logits, s_),
        lambda s_: diff.kl(l0, ls, logits, s_, reduction="none"),
    ):
        batched = fn(s)
        for b in range(3):
            torch.testing.assert_close(batched[b], fn(int(s[b]))[b])


def test_full_reverse_chain_with_a_perfect_denoiser_recovers_the_data():
    """Algorithm 2 end to end: prior -> sample_step x S with p_theta = the true posterior of pi -> l_0 ~ pi."""
    n = 5
    diff = GraphDiffusion(ring_rate(n), steps=8, tol=0.01)
    pi = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    _, qbar = explicit(diff)
    g = torch.Generator().manual_seed(0)
    tokens = diff.prior_sample((20_000,), generator=g)
    for s in range(diff.steps, 0, -1):
        post_l0 = pi[:, None] * qbar[s]
        logits = torch.as_tensor(np.log(post_l0 / post_l0.sum(0, keepdims=True)).T)[tokens]
        tokens = diff.sample_step(tokens, logits, s, generator=g)
    empirical = np.bincount(tokens.numpy(), minlength=n) / len(tokens)
    assert np.abs(empirical - pi).sum() / 2 < 0.02


def test_one_forward_step_follows_q_s_and_composes_to_q_bar():
    """``q_step_sample`` draws from the row ``Q_s[l_{s-1}]``; one step from ``q(l_{s-1} | l_0)`` gives ``q(l_s | l_0)``."""
    diff = GraphDiffusion(ring_rate(6), steps=5)
    g = torch.Generator().manual_seed(3)
    start = torch.full((60_000,), 2, dtype=torch.long)
    one = diff.q_step_sample(start, 4, generator=g)
    empirical = np.bincount(one.numpy(), minlength=6) / len(one)
    assert np.abs(empirical - diff.transition_matrix(4, cumulative=False)[2]).max() < 0.01
    two = diff.q_step_sample(diff.q_sample(start, 3, generator=g), 4, generator=g)
    empirical = np.bincount(two.numpy(), minlength=6) / len(two)
    assert np.abs(empirical - diff.transition_matrix(4)[2]).max() < 0.01
    with pytest.raises(ValueError, match="steps must be in 1..5"):
        diff.q_step_sample(start, 0)


def test_corrector_round_leaves_the_marginal_invariant_with_a_perfect_denoiser():
    """A corrector round (one forward step s-1 -> s, then the reverse step with the true posterior of the data
    distribution pi as p_theta) is a Markov kernel K on l_{s-1} with q(l_{s-1}) K = q(l_{s-1}), exactly."""
    n = 6
    diff = GraphDiffusion(sparse_graph(n, 3), abar=[0.2, 0.6, 1.4, 3.0])
    q, qbar = explicit(diff)
    pi = np.array([0.4, 0.05, 0.2, 0.05, 0.25, 0.05])
    for s in range(1, diff.steps + 1):
        post_l0 = pi[:, None] * qbar[s]
        logits = torch.as_tensor(np.log(post_l0 / post_l0.sum(0, keepdims=True)).T)  # [l_s, l0]
        reverse = diff.reverse_probs(torch.arange(n), logits, s).numpy()  # [l_s, l_{s-1}]
        kernel = q[s] @ reverse  # forward then reverse: [l_{s-1}, l_{s-1}']
        marginal = pi @ qbar[s - 1]
        np.testing.assert_allclose(marginal @ kernel, marginal, atol=1e-10)
        assert np.abs(kernel - np.eye(n)).max() > 1e-3  # it does move tokens


def test_sampling_is_seeded_and_follows_q():
    diff = GraphDiffusion(ring_rate(6), steps=5)
    l0 = torch.zeros(50_000, dtype=torch.long)
    a = diff.q_sample(l0, 3, generator=torch.Generator().manual_seed(7))
    b = diff.q_sample(l0, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    empirical = np.bincount(a.numpy(), minlength=6) / len(a)
    assert np.abs(empirical - diff.transition_matrix(3)[0]).max() < 0.01
    prior = diff.prior_sample((4, 9), generator=torch.Generator().manual_seed(0))
    assert (
        prior.shape == (4, 9) and prior.dtype == torch.long and 0 <= int(prior.min()) <= int(prior.max()) < 6
    )
    steps = diff.random_steps(1000, generator=torch.Generator().manual_seed(0))
    assert int(steps.min()) == 1 and int(steps.max()) == diff.steps


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 6), seed=st.integers(0, 10_000), coupling=st.sampled_from([0.0, 0.3, 0.9, 1.0]))
def test_coupled_draws_keep_each_tokens_marginal(n, seed, coupling):
    """Gumbel-max with noise correlated along time: every token is still drawn from its own row, and a
    zero-probability state never."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n), size=5)  # [T, N]
    p[np.arange(5), rng.integers(0, n, 5)] = 0.0
    p /= p.sum(1, keepdims=True)
    m = 20_000
    draws = coupled_categorical(
        torch.tensor(p).expand(m, 5, n), coupling, torch.Generator().manual_seed(seed)
    )
    assert draws.shape == (m, 5) and draws.dtype == torch.long
    freq = np.stack([np.bincount(draws[:, t].numpy(), minlength=n) / m for t in range(5)])
    assert (freq[p == 0] == 0).all()
    assert np.abs(freq - p).max() < 0.02  # 5.7 sd of a frequency over 20,000 draws


def test_coupling_makes_neighbours_agree_and_fades_with_lag():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64).expand(4000, 12, 3)

    def agreement(rho, lag=1):
        draws = coupled_categorical(p, rho, torch.Generator().manual_seed(1))
        return float((draws[:, lag:] == draws[:, :-lag]).double().mean())

    independent = 0.5**2 + 0.3**2 + 0.2**2  # two independent draws agree with probability sum p^2
    assert abs(agreement(0.0) - independent) < 0.01
    assert agreement(0.0) < agreement(0.5) < agreement(0.9) < agreement(1.0) == 1.0
    assert agreement(0.9, 1) > agreement(0.9, 4) > agreement(0.9, 11) > independent + 0.01


def test_reverse_step_with_coupling_keeps_the_reverse_marginal():
    """sample_step(coupling=rho) draws each token from reverse_probs, whatever rho."""
    diff = GraphDiffusion(ring_rate(6), steps=5)
    l_s = torch.tensor([0, 0, 3, 3, 3, 5]).expand(10_000, 6)
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0)).double()[l_s]  # one row per l_s
    expected = diff.reverse_probs(l_s[:1], logits[:1], 3)[0].numpy()  # [T, N]
    draws = diff.sample_step(l_s, logits, 3, torch.Generator().manual_seed(2), coupling=0.95)
    freq = np.stack([np.bincount(draws[:, t].numpy(), minlength=6) / len(draws) for t in range(6)])
    assert np.abs(freq - expected).max() < 0.025
    plain = diff.sample_step(l_s, logits, 3, torch.Generator().manual_seed(2))

    def agreement(x):  # tokens 0 and 1 share their row of reverse_probs
        return float((x[:, 0] == x[:, 1]).double().mean())

    assert abs(agreement(plain) - (expected[0] ** 2).sum()) < 0.02
    assert agreement(draws) > agreement(plain) + 0.2
    assert torch.equal(plain, diff.sample_step(l_s, logits, 3, torch.Generator().manual_seed(2), coupling=0))


def test_bad_coupling_is_rejected():
    p = torch.full((2, 3, 4), 0.25, dtype=torch.float64)
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ConfigError, match="coupling must be a number in"):
            coupled_categorical(p, bad)
    with pytest.raises(ValueError, match=r"shape \[\.\.\., T, N\]"):
        coupled_categorical(torch.full((4,), 0.25), 0.5)


def test_strided_schedule_shares_the_eigenbasis():
    diff = GraphDiffusion(sparse_graph(8, 4), steps=20)
    visited = [2, 5, 11, 20]
    sub = diff.with_schedule(diff.abar[visited])
    fresh = GraphDiffusion(diff.rate, abar=diff.abar[visited])
    assert sub.steps == 4 and sub.eigenvectors is diff.eigenvectors and diff.steps == 20
    np.testing.assert_array_equal(sub.abar, fresh.abar)
    g = torch.Generator().manual_seed(0)
    ls = torch.randint(0, 8, (3, 4), generator=g)
    logits = torch.randn(3, 4, 8, generator=g)
    for j in range(1, 5):
        torch.testing.assert_close(sub.reverse_probs(ls, logits, j), fresh.reverse_probs(ls, logits, j))
    np.testing.assert_allclose(sub.transition_matrix(2), diff.transition_matrix(5), atol=1e-14)


@settings(max_examples=30)
@given(steps=st.integers(2, 40), first=st.floats(1e-3, 0.5), ratio=st.floats(1.5, 1e4), u=st.floats(0, 1))
def test_abar_between_steps_continues_the_geometric_schedule(steps, first, ratio, u):
    """``abar_at`` is the schedule at integer steps, the same geometric law at real steps >= 1, and the chain's
    time growing linearly from 0 on [0, 1]; it is increasing, so a finer chain is a valid schedule."""
    diff = GraphDiffusion(ring_rate(6), abar=geometric_schedule(first, first * ratio, steps))
    whole = np.arange(steps + 1)
    np.testing.assert_array_equal(diff.abar_at(whole), diff.abar)
    s = 1 + u * (steps - 1)
    expected = first * ratio ** ((s - 1) / (steps - 1))
    assert diff.abar_at(s) == pytest.approx(expected, rel=1e-9)
    assert diff.abar_at(u) == pytest.approx(u * first, rel=1e-12, abs=1e-300)
    fine = diff.abar_at(np.linspace(0, steps, 8 * steps + 1))
    assert (np.diff(fine) > 0).all()
    finer = diff.with_schedule(fine[1:])  # a valid chain: the same eigenbasis, 8x the steps
    assert finer.steps == 8 * steps and finer.abar[-1] == diff.abar[-1]


def test_abar_outside_the_chain_is_rejected():
    diff = GraphDiffusion(ring_rate(6), steps=5)
    for bad in (-0.5, 5.5, np.nan):
        with pytest.raises(ConfigError, match=r"steps must lie in \[0, 5\]"):
            diff.abar_at([1.0, bad])


# -- schedule ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rate",
    [
        ("ring", ring_rate(40)),
        ("grid", grid_rate(7)),
        ("sparse", sparse_graph(30, 5)),
        ("uniform", uniform_rate(30)),
    ],
)
def test_schedule_reaches_uniform_within_tol(name, rate):
    tol = 0.05
    diff = GraphDiffusion(rate, steps=50, tol=tol)
    qbar = scipy.linalg.expm(diff.abar[-1] * rate)
    exact_tv = 0.5 * np.abs(qbar - 1 / len(rate)).sum(1).max()
    assert exact_tv <= tol
    assert diff.tv_from_uniform() == pytest.approx(exact_tv, abs=1e-10)
    assert diff.tv_bound_at(diff.abar[-1]) <= tol + 1e-12
    # ... and not wastefully long: at half the final time the tolerance is not met yet
    half = scipy.linalg.expm(0.5 * diff.abar[-1] * rate)
    assert 0.5 * np.abs(half - 1 / len(rate)).sum(1).max() > tol
    # ... the gap bound of the brief holds, and the per-row bound is tighter
    gap_bound = 0.5 * np.sqrt(len(rate)) * np.exp(-diff.abar[-1] * diff.spectral_gap)
    assert exact_tv <= diff.tv_bound_at(diff.abar[-1]) <= gap_bound + 1e-12
    # increasing, geometric, and a small first step
    a = diff.abar
    assert a[0] == 0 and (np.diff(a) > 0).all() and len(a) == 51
    np.testing.assert_allclose(a[2:] / a[1:-1], a[2] / a[1], rtol=1e-10)
    first_leave = 1 - np.diag(scipy.linalg.expm(a[1] * rate)).min()
    assert first_leave <= 0.0101


@pytest.mark.parametrize("name, rate", [("ring", ring_rate(64)), ("grid", grid_rate(8))])
def test_authors_final_abar_is_far_from_uniform_on_sparse_graphs(name, rate):
    """The authors' schedule stops at alpha-bar = 1.97: on a sparse graph Q-bar_S is then nowhere near the
    uniform prior the sampler starts from (exact TV > 0.5), so training never sees the states that generation
    starts in. The spectral-gap rule needs alpha-bar_S in the hundreds here."""
    authors = GraphDiffusion(rate, abar=np.linspace(0, AUTHORS_FINAL_ABAR, 51)[1:])
    assert authors.tv_from_uniform() > 0.5
    ours = GraphDiffusion(rate, steps=50)
    assert ours.tv_from_uniform() <= 0.05
    assert ours.abar[-1] > 20 * AUTHORS_FINAL_ABAR


def test_schedule_helpers():
    a = geometric_schedule(0.01, 100.0, 5)
    np.testing.assert_allclose(a, [0, 0.01, 0.1, 1, 10, 100])
    assert list(geometric_schedule(1.0, 3.0, 1)) == [0.0, 3.0]
    rate = ring_rate(12)
    lam, vec = np.linalg.eigh(rate)
    lam, vec = lam[::-1], vec[:, ::-1]
    t = mixing_time(lam, vec, 0.1)
    assert tv_bound(lam, vec, t).max() == pytest.approx(0.1, rel=1e-6)
    with pytest.raises(ConfigError):
        mixing_time(lam, vec, 0.99)
    with pytest.raises(ConfigError):
        geometric_schedule(2.0, 1.0, 3)


# -- uniform fallback ----------------------------------------------------------------------------------------


def test_uniform_fallback_is_d3pm_uniform_corruption():
    n = 9
    diff = GraphDiffusion.uniform(n, steps=12)
    for s in (1, 5, 12):
        keep = np.exp(-diff.abar[s])
        np.testing.assert_allclose(diff.transition_matrix(s), keep * np.eye(n) + (1 - keep) / n, atol=1e-12)
    assert diff.tv_from_uniform() == pytest.approx((1 - 1 / n) * np.exp(-diff.abar[-1]), abs=1e-12)
    assert diff.tv_from_uniform() <= 0.05
    assert diff.spectral_gap == pytest.approx(1.0)
    # posterior (D3PM eq. 3 with uniform Q) against the closed form
    s, l0, ls = 4, torch.tensor([2]), torch.tensor([7])
    k1, kb = np.exp(-diff.alpha[s]), np.exp(-diff.abar[s - 1])
    fwd = k1 * np.eye(n)[7] + (1 - k1) / n  # Q_s[:, l_s]
    back = kb * np.eye(n)[2] + (1 - kb) / n  # Q-bar_{s-1}[l0, :]
    np.testing.assert_allclose(
        diff.posterior_probs(ls, l0, s)[0].numpy(), fwd * back / (fwd * back).sum(), atol=1e-12
    )


# -- numerics ------------------------------------------------------------------------------------------------


def test_unreachable_candidates_are_left_out():
    """Early on a sparse graph most l_0 cannot have produced l_s (Q-bar_s[l_0, l_s] ~ 1e-30: below the eigen
    computation's rounding). Those candidates are dropped and the mixture renormalised over the rest."""
    n, s, k = 30, 2, 0
    rate, abar = ring_rate(n), [0.05, 0.1, 0.3]
    den = scipy.linalg.expm(abar[s - 1] * rate)[:, k]
    # a floor between two decades of den (~1e-7, 1e-9, 1e-11 ...), so that no candidate is borderline
    floor = float(np.sqrt(den[4] * den[5]))
    assert not ((den > floor / 5) & (den < floor * 5)).any()
    diff = GraphDiffusion(rate, abar=abar, floor=floor)
    q, qbar = explicit(diff)
    valid = den > diff.floor
    assert 0 < valid.sum() < n
    logits = torch.randn(1, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p0 = torch.softmax(logits, -1).numpy()[0] * valid
    expect = (p0 / p0.sum()) @ brute_posterior(q, qbar, s)[:, k, :]
    ours = diff.reverse_probs(torch.tensor([k]), logits, s)[0].numpy()
    np.testing.assert_allclose(ours, expect, atol=1e-10)
    # all the mass on an unreachable l0 (the rest underflows to 0): fall back to a uniform-l0 posterior
    far = torch.full((1, n), -2000.0, dtype=torch.float64)
    far[0, n // 2] = 0.0
    fallback = diff.reverse_probs(torch.tensor([k]), far, s)[0].numpy()
    w = den * valid
    np.testing.assert_allclose(fallback, (w / w.sum()) @ brute_posterior(q, qbar, s)[:, k, :], atol=1e-10)


def test_truncated_spectrum_error_is_bounded_and_saves_modes_late():
    n = 80
    rate = ring_rate(n)
    full = GraphDiffusion(rate, steps=30)
    tol = 1e-10
    trunc = GraphDiffusion(rate, steps=30, spectral_tol=tol)
    g = torch.Generator().manual_seed(0)
    l0 = torch.randint(0, n, (4, 6), generator=g)
    ls = torch.randint(0, n, (4, 6), generator=g)
    logits = torch.randn(4, 6, n, generator=g, dtype=torch.float64)
    ranks = []
    for s in (2, 15, 25, 30):
        ranks.append(trunc._rank(torch.tensor([trunc.abar[s - 1]])))
        err_q = (trunc.q_probs(l0, s) - full.q_probs(l0, s)).abs().max()
        assert err_q <= 2 * tol
        err_p = (trunc.reverse_probs(ls, logits, s) - full.reverse_probs(ls, logits, s)).abs().max()
        assert err_p < 1e-6
    assert ranks[0] == n and ranks[-1] < 10  # early steps need every mode, late ones a handful


def test_invalid_rate_matrices_are_rejected():
    two = laplacian_rate(np.ones((3, 3)))
    blocks = scipy.linalg.block_diag(two, two)
    with pytest.raises(DataError, match="2 connected components"):
        GraphDiffusion(blocks)
    asym = two.copy()
    asym[0, 1] += 0.5
    asym[0, 0] -= 0.5
    with pytest.raises(DataError, match="symmetric"):
        GraphDiffusion(asym)
    with pytest.raises(DataError, match="sum to 0"):
        GraphDiffusion(two + np.eye(3))
    neg = two.copy()
    neg[0, 1] = neg[1, 0] = -0.1
    with pytest.raises(DataError, match=">= 0"):
        GraphDiffusion(neg - np.diag(neg.sum(1)))
    with pytest.raises(ConfigError):
        GraphDiffusion(two, abar=[1.0, 0.5])


def test_invalid_calls_are_rejected():
    diff = GraphDiffusion(ring_rate(5), steps=4)
    z = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="steps must be in 1..4"):
        diff.posterior_probs(z, z, 0)
    with pytest.raises(ValueError, match="steps must be in"):
        diff.q_probs(z, 5)
    with pytest.raises(ValueError, match="outside"):
        diff.q_probs(z + 5, 1)
    with pytest.raises(ValueError, match="logits must have shape"):
        diff.reverse_probs(z, torch.zeros(2, 3, 4), 1)
    with pytest.raises(ValueError, match="s_to must be below s"):
        diff.reverse_probs(z, torch.zeros(2, 3, 5), 2, s_to=2)
    with pytest.raises(ValueError, match="steps must be in 0..4"):
        diff.reverse_probs(z, torch.zeros(2, 3, 5), 2, s_to=-1)
