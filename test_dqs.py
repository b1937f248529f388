"""Tests for dqs.py, sac_baseline.py and toy_bandit.py, in the order of dqs.py: the noise schedule, the score
network, the score target, the score loss, the sampler, the critic, what is not in the paper, the skeleton and
the loop, the command line, then the toy bandit. The tools around them (the paper's extra tasks, docs/scripts/,
benchmark/) are tested in test_scripts.py.

    pytest test_dqs.py test_scripts.py

Statistical tests state their tolerance as a multiple of the standard error implied by their sample
counts; every seed is fixed, so a run is repeatable, but no tolerance was tuned to a seed.
"""
import ast
import dataclasses
import difflib
import importlib.util
import json
import math
import os
import re
import runpy
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tyro

import dqs
import sac_baseline

HERE = os.path.dirname(os.path.abspath(__file__))
Z = 4.0  # tolerances are Z standard errors: a correct implementation fails a check with p < 1e-4

# ---------------------------------------------------------------------------------------------
# Noise schedule
def test_noise_schedule_endpoints_and_derivative():
    schedule = dqs.Schedule(1e-5, 1.0)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    h = schedule.h(t)
    assert h[0] == 0.0
    assert math.isclose(h[1].item(), schedule.sigma_max**2 - schedule.sigma_min**2, rel_tol=1e-12)
    # g(t)^2 must be dh/dt: compare with a central difference
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    eps = 1e-6
    dh = (schedule.h(t + eps) - schedule.h(t - eps)) / (2 * eps)
    torch.testing.assert_close(schedule.g2(t), dh, rtol=1e-6, atol=0.0)

# ---------------------------------------------------------------------------------------------
# Score network
def test_sinusoidal_embedding_is_the_authors_closed_form():
    """The authors' code: 64 frequencies f_k = exp(-ln(1000) k / 63) applied to x itself: features [sin(x f_k), cos(x f_k)]."""
    x = torch.tensor([0.0, 0.05, 0.5, 1.0], dtype=torch.float64)
    emb = dqs.sinusoidal_embedding(x)
    assert emb.shape == (4, 128)
    for k in (0, 1, 31, 63):
        f = math.exp(-math.log(1000.0) * k / 63)
        for row, value in enumerate(x.tolist()):
            assert math.isclose(emb[row, k].item(), math.sin(value * f), abs_tol=1e-12)
            assert math.isclose(emb[row, 64 + k].item(), math.cos(value * f), abs_tol=1e-12)
    assert math.isclose(emb[3, 0].item(), math.sin(1.0), abs_tol=1e-12)  # the fastest angle is t itself, in radians
    assert math.isclose(emb[3, 63].item(), math.sin(1e-3), abs_tol=1e-12)  # the slowest is t / 1000


def test_networks_use_the_authors_orthogonal_init():
    """Every Linear layer of the score network and the critics: orthogonal with gain sqrt(2), zero bias."""
    for net in (dqs.ScoreNetwork(6, 2), dqs.SoftQNetwork(6, 2)):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight.double()
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                torch.testing.assert_close(gram, 2.0 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5, rtol=0)
                assert (m.bias == 0).all()


def test_score_network_shapes_and_temperature_input():
    torch.manual_seed(0)
    net = dqs.ScoreNetwork(6, 2)
    obs, x, t = torch.randn(8, 6), torch.randn(8, 2), torch.rand(8)
    assert net(obs, x, t, 0.05).shape == (8, 2)
    # T is an input: per-row temperatures agree with a scalar one, and a different T changes the output
    torch.testing.assert_close(net(obs, x, t, torch.full((8,), 0.05)), net(obs, x, t, 0.05))
    assert not torch.allclose(net(obs, x, t, 0.05), net(obs, x, t, 0.5))


def test_score_network_conditioned_form_is_the_concatenation():
    """The sampler's form (state and T through the first layer once per call) is the same function as the
    paper's network on concat[s, x_t, emb(t), emb(T)]."""
    torch.manual_seed(0)
    net = dqs.ScoreNetwork(6, 2).double()
    obs, x, T = torch.randn(8, 6).double(), torch.randn(8, 2).double(), torch.tensor(0.05, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    emb = torch.cat([dqs.sinusoidal_embedding(t.expand(8)), dqs.sinusoidal_embedding(T.expand(8))], -1)
    h = F.gelu(net.fc_in(torch.cat([obs, x, emb], -1)))
    h = h + F.gelu(net.res1(h))
    h = h + F.gelu(net.res2(h))
    expected = net.fc_out(h)
    torch.testing.assert_close(net(obs, x, t.expand(8), T.expand(8)), expected)
    torch.testing.assert_close(net(obs, x, t, T), expected)  # one t and T for all rows
    torch.testing.assert_close(net.condition(obs, T)(x, t), expected)

# ---------------------------------------------------------------------------------------------
# Monte-Carlo score target against a closed form
# A quadratic critic Q(a) = -T |a - mu|^2 / (2 v0) makes the Boltzmann policy N(mu, v0 I); its
# noised version is N(mu, (v0 + h(t)) I), whose score is -(x_t - mu) / (v0 + h(t)).
@pytest.mark.parametrize("form", ["grad", "blend", "cv"])
@pytest.mark.parametrize("h_target", [1e-3, 0.1, 1.0])
def test_mc_score_target_matches_gaussian_closed_form(h_target, form):
    torch.manual_seed(0)
    schedule, T, v0, K, R = dqs.Schedule(1e-5, 1.0), 0.05, 0.5, 1000, 400
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)

    def q_fn(obs, a):
        return -T * (a - mu).pow(2).sum(-1) / (2 * v0) + 0.0 * obs.sum(-1)

    # the t at which h(t) = h_target
    t = math.log(h_target / schedule.sigma_min**2 + 1) / (2 * math.log(schedule.sigma_max / schedule.sigma_min))
    x_t = torch.tensor([[0.9, 0.4]], dtype=torch.float64).expand(R, -1)  # R independent estimates at one point
    obs = torch.zeros(R, 1, dtype=torch.float64)

    def estimate(form):
        torch.manual_seed(0)
        return dqs.mc_score_target(lambda a: q_fn(obs.unsqueeze(1), a), x_t, torch.full((R,), t, dtype=torch.float64), T, K,
                                   schedule, form=form)

    est = estimate(form)
    exact = -(x_t[0] - mu) / (v0 + h_target)
    # the band is Z standard errors of the paper's S_K (or of this form, if larger): the blend's spread is
    # 10-40x smaller than S_K's at h >= 0.1, so its own O(1/K) self-normalisation bias, 2-4 of its own
    # standard errors at K = 1000 (seeds 0-2), would decide a band of its own size; the claim tested is
    # that it is at least as close to the closed form as the paper's estimator has to be
    se = torch.maximum(est.std(0), estimate("grad").std(0)) / math.sqrt(R)
    assert (est.mean(0) - exact).abs().le(Z * se).all(), (est.mean(0), exact, se)
    # the test has power: the un-noised score -(a - mu) / v0 lies far outside the band when h is large
    if h_target >= 0.1:
        assert ((est.mean(0) + (x_t[0] - mu) / v0).abs() > Z * se).all()


@pytest.mark.parametrize("h_target", [1e-3, 0.1, 1.0])
def test_refit_score_matches_gaussian_closed_form(h_target):
    """--acting-estimate refit on the same quadratic critic: the mean of R estimates within Z standard errors."""
    schedule, T, v0, K, R = dqs.Schedule(1e-5, 1.0), 0.05, 0.5, 1000, 400
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    t = math.log(h_target / schedule.sigma_min**2 + 1) / (2 * math.log(schedule.sigma_max / schedule.sigma_min))
    x_t = torch.tensor([[0.9, 0.4]], dtype=torch.float64).expand(R, -1)
    torch.manual_seed(0)
    est = dqs.refit_score(lambda a: -T * (a - mu).pow(2).sum(-1) / (2 * v0), x_t, torch.full((R,), t, dtype=torch.float64), T,
                          K, schedule)
    exact = -(x_t[0] - mu) / (v0 + h_target)
    assert (est.mean(0) - exact).abs().le(Z * est.std(0) / math.sqrt(R)).all(), (est.mean(0), exact)


def test_refit_score_finds_a_sharp_policy_the_blend_misses():
    """A policy 100x narrower than the noise (v0 = 1e-4, std 0.01; K = 64; h = 0.1): the posterior mean h (score - exact)
    each estimate implies, the sampler's displacement, errs by several policy widths. Over R independent pairs the
    refit's error is the smaller one more often than a coin would make it: the share exceeds 1/2 by Z binomial
    standard errors, 0.5 / sqrt(R) (measured: 0.89-0.91 over three seeds; at h = 1 only 0.57, so h = 1 is not claimed)."""
    schedule, T, v0, K, R, h_target = dqs.Schedule(1e-5, 1.0), 0.05, 1e-4, 64, 400, 0.1
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    q = lambda a: -T * (a - mu).pow(2).sum(-1) / (2 * v0)
    t = math.log(h_target / schedule.sigma_min**2 + 1) / (2 * math.log(schedule.sigma_max / schedule.sigma_min))
    x_t, t = torch.tensor([[0.9, 0.4]], dtype=torch.float64).expand(R, -1), torch.full((R,), t, dtype=torch.float64)
    exact = -(x_t[0] - mu) / (v0 + h_target)
    torch.manual_seed(0)
    refit = (dqs.refit_score(q, x_t, t, T, K, schedule) - exact).pow(2).sum(-1)
    torch.manual_seed(1)
    blend = (dqs.mc_score_target(q, x_t, t, T, K, schedule, form="blend") - exact).pow(2).sum(-1)
    share = (refit < blend).double().mean()
    assert share > 0.5 + Z * 0.5 / math.sqrt(R), share


def test_mc_score_target_at_t0_is_the_critic_gradient_chunked_or_not():
    """At t = 0 no noise is added, so every one of the K samples is x_t and S_K = grad_a Q / T exactly; the
    critic at fixed states (SoftQNetwork.condition, its state part computed once) is its forward."""
    torch.manual_seed(0)
    critic = dqs.SoftQNetwork(3, 2).double()
    obs, x_t, t, T = torch.randn(16, 3).double(), torch.randn(16, 2).double(), torch.zeros(16).double(), 0.1
    q = critic.condition(obs.unsqueeze(1))
    a = x_t.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(critic(obs, a).sum(), a)
    many = torch.randn(16, 5, 2).double()
    torch.testing.assert_close(q(many), critic(obs.unsqueeze(1).expand(-1, 5, -1).reshape(80, 3), many.reshape(80, 2)).reshape(16, 5))
    full = dqs.mc_score_target(q, x_t, t, T, 64, chunk_size=64)
    chunked = dqs.mc_score_target(q, x_t, t, T, 64, chunk_size=10)
    default = dqs.mc_score_target(q, x_t, t, T, 64)  # on the CPU: chunks of CPU_CHUNK_ROWS // 16 samples
    torch.testing.assert_close(full, exact / T)
    torch.testing.assert_close(chunked, exact / T)
    torch.testing.assert_close(default, exact / T)
    torch.testing.assert_close(dqs.mc_score_target(q, x_t, t, T, 64, form="blend"), exact / T)  # alpha = 1 at h = 0
    assert all(p.grad is None for p in critic.parameters())  # action-gradients only, no parameter gradients


def test_mc_score_target_does_not_depend_on_the_chunk_size():
    """At t > 0 the z draws are made before chunking: the chunk size changes neither the draws nor the estimate."""
    torch.manual_seed(0)
    critic = dqs.SoftQNetwork(3, 2).double()
    obs, x_t, T = torch.randn(16, 3).double(), torch.randn(16, 2).double(), 0.1
    q, t = critic.condition(obs.unsqueeze(1)), torch.full((16,), 0.7).double()
    estimates = []
    for chunk_size in (None, 7, 64):
        torch.manual_seed(1)
        estimates.append(dqs.mc_score_target(q, x_t, t, T, 64, chunk_size=chunk_size))
    torch.testing.assert_close(estimates[0], estimates[2])
    torch.testing.assert_close(estimates[1], estimates[2])


def test_blend_with_a_single_sample_is_s_k():
    """With K = 1 there is no spread to blend on: the blend is S_K itself."""
    torch.manual_seed(0)
    critic = dqs.SoftQNetwork(3, 2).double()
    obs, x_t, T = torch.randn(16, 3).double(), torch.randn(16, 2).double(), 0.1
    q, t = critic.condition(obs.unsqueeze(1)), torch.full((16,), 0.7).double()
    single = []
    for form in ("grad", "blend"):
        torch.manual_seed(2)
        single.append(dqs.mc_score_target(q, x_t, t, T, 1, form=form))
    torch.testing.assert_close(single[0], single[1])

# ---------------------------------------------------------------------------------------------
# Score loss
def test_score_loss_is_the_lambda_weighted_squared_error_against_s_k():
    """loss = mean_b lambda(t) mean_d (s_theta(s, x_t, t, T) - S_K(x_t))^2, lambda(t) = h(t) + 1e-3, with one
    t ~ U(0, 1) per row and x_t = x_0 + sqrt(h(t)) eps: the same draws, written out, give the same number."""
    torch.manual_seed(0)
    net, critic, schedule = dqs.ScoreNetwork(3, 2).double(), dqs.SoftQNetwork(3, 2).double(), dqs.Schedule(1e-5, 2.0)
    obs, x_0, T = torch.randn(8, 3).double(), torch.rand(8, 2).double() * 2 - 1, 0.05
    q = critic.condition(obs.unsqueeze(1))
    torch.manual_seed(1)
    loss = dqs.score_matching_loss(net, q, obs, x_0, T, 16, schedule)
    torch.manual_seed(1)
    t = torch.rand(8, dtype=torch.float64)
    h = schedule.h(t)
    x_t = x_0 + h.sqrt().unsqueeze(-1) * torch.randn_like(x_0)
    target = dqs.mc_score_target(q, x_t, t, T, 16, schedule)
    expected = ((h + 1e-3) * (net(obs, x_t, t, T) - target).pow(2).mean(-1)).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()  # the target is a constant: the loss trains the score network only
    assert all(p.grad is None for p in critic.parameters()) and net.fc_out.weight.grad is not None

# ---------------------------------------------------------------------------------------------
# Sampler against a closed form: the exact score of a noised 1-D two-mode mixture drives
# sample_actions; the samples must reproduce the mixture's mode mass, mean and variance.
# sample_actions; the samples must reproduce the mixture's mode mass, mean and variance.
MIX_W, MIX_M, MIX_S2 = torch.tensor([0.7, 0.3]), torch.tensor([-0.5, 0.5]), torch.tensor([0.01, 0.01])


def mixture_score(schedule):
    def score(x, t):
        v = MIX_S2 + schedule.h(t)  # (2,)
        resp = torch.softmax(torch.log(MIX_W) - 0.5 * (x - MIX_M) ** 2 / v - 0.5 * torch.log(v), -1)
        return (resp * (-(x - MIX_M) / v)).sum(-1, keepdim=True)

    return score


def test_sampler_reproduces_mixture_with_wide_prior():
    torch.manual_seed(0)
    n, schedule, N = 20_000, dqs.Schedule(1e-5, 3.0), 1000
    x = dqs.sample_actions(mixture_score(schedule), (n, 1), N, schedule)[:, 0].double()
    p = MIX_W[0].item()
    mean = (MIX_W * MIX_M).sum().item()
    var = (MIX_W * (MIX_S2 + MIX_M**2)).sum().item() - mean**2
    m4 = (MIX_W * ((MIX_M - mean) ** 4 + 6 * (MIX_M - mean) ** 2 * MIX_S2 + 3 * MIX_S2**2)).sum().item()
    assert abs((x < 0).double().mean().item() - p) < Z * math.sqrt(p * (1 - p) / n)
    assert abs(x.mean().item() - mean) < Z * math.sqrt(var / n)
    assert abs(x.var().item() - var) < Z * math.sqrt((m4 - var**2) / n)


def test_sampler_prior_mismatch_at_paper_sigma_max():
    """Documents a weak point kept from the paper: with sigma_max = 1 the prior N(0, h(1)) is narrower
    than the noised mixture, and the major mode's mass comes out measurably low."""
    torch.manual_seed(0)
    n, schedule, N = 20_000, dqs.Schedule(1e-5, 1.0), 500
    x = dqs.sample_actions(mixture_score(schedule), (n, 1), N, schedule)[:, 0]
    p = MIX_W[0].item()
    assert (x < 0).double().mean().item() < p - Z * math.sqrt(p * (1 - p) / n)

# ---------------------------------------------------------------------------------------------
# Critic and temperature
def test_critic_broadcasts_one_state_over_many_actions():
    torch.manual_seed(0)
    q = dqs.SoftQNetwork(5, 3)
    obs, actions = torch.randn(4, 5), torch.randn(4, 7, 3)
    broadcast = q(obs.unsqueeze(1), actions)
    explicit = q(obs.unsqueeze(1).expand(-1, 7, -1).reshape(-1, 5), actions.reshape(-1, 3)).reshape(4, 7)
    fused = q.fc3(torch.relu(q.fc2(torch.relu(q.fc1(torch.cat([obs.unsqueeze(1).expand(-1, 7, -1), actions], -1)))))).squeeze(-1)
    assert broadcast.shape == (4, 7)
    torch.testing.assert_close(broadcast, explicit)
    torch.testing.assert_close(broadcast, fused)


@pytest.mark.parametrize("exact_bounds", [False, True])
def test_hand_written_critic_gradient_is_autograds(exact_bounds):
    """The twin log target's value_and_grad (the critics' backward by hand, the default path) against autograd
    through the same networks, in float64 to 1e-6."""
    torch.manual_seed(0)
    qf1, qf2 = dqs.SoftQNetwork(5, 3).double(), dqs.SoftQNetwork(5, 3).double()
    obs, x, T = torch.randn(4, 1, 5, dtype=torch.float64), 1.5 * torch.randn(4, 9, 3, dtype=torch.float64), 0.3
    log_target = dqs.twin_log_target(qf1, qf2, obs, T, exact_bounds)
    q, grad = log_target.value_and_grad(x)
    xg = x.clone().requires_grad_(True)
    reference = dqs.log_target_times_T(lambda a: torch.min(qf1(obs, a), qf2(obs, a)), xg, T, exact_bounds)
    (reference_grad,) = torch.autograd.grad(reference.sum(), xg)
    torch.testing.assert_close(q, reference.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, reference_grad, rtol=0, atol=1e-6)
    # and values_and_action_grads takes it, chunked or not, where it would otherwise use autograd
    for chunk in (1, 4, 9):
        q_chunked, grad_chunked = dqs.values_and_action_grads(log_target, x, chunk)
        torch.testing.assert_close(grad_chunked, reference_grad, rtol=0, atol=1e-6)
    plain = lambda a: log_target(a)  # no value_and_grad: the autograd path
    torch.testing.assert_close(dqs.values_and_action_grads(plain, x, 4)[1], reference_grad, rtol=0, atol=1e-6)


def test_temperature_rule_on_a_quadratic_critic_gives_a_policy_of_the_target_width():
    """Q = -|a - mu|^2 / 2c: exp(Q/T) is N(mu, cT) and E[(dQ/da_d)^2] = T / c there, so T <- scale RMS(dQ/da) has the
    fixed point T* = scale^2 / c, where the policy's std is `scale`, whatever c (the reward's scale). Tracked from
    far off with exact Boltzmann draws each update: log T's deviation is then a stable AR(1) with variance
    rate / (2 n d) (the RMS of n d squared Gaussians has relative std sqrt(1 / (2 n d))); tolerance Z of its std."""
    torch.manual_seed(0)
    n, d, scale, rate, mu = 4096, 3, 0.09, 0.1, torch.tensor([0.2, -0.5, 0.0])
    for c in (0.05, 50.0):
        T = torch.tensor(1e-4 / c)
        for update in range(300):
            a = mu + (c * T).sqrt() * torch.randn(n, d)  # the Boltzmann policy exp(Q/T) of the quadratic critic
            dq_da = -(a - mu) / c
            dqs.track_temperature(T, dqs.temperature_from_critic(dq_da, scale), 1.0 if update == 0 else rate)
        assert abs(math.log(T.item() * c / scale**2)) < Z * math.sqrt(rate / (2 * n * d))


def test_temperature_rule_is_scale_invariant():
    """Q -> 100 Q gives T -> 100 T and the same policy: the critic-driven sampler with the rule tracked on its own
    draws, from the same seed, draws the same actions for a critic and for 100 times it."""
    def run(factor):
        torch.manual_seed(0)
        qf = dqs.SoftQNetwork(2, 2)
        obs, T, draws = torch.randn(64, 1, 2), torch.tensor(factor * 0.01), []  # a start in the units of Q too
        for update in range(5):
            q = lambda a: factor * qf.condition(obs)(a)
            a = torch.tanh(dqs.sample_actions(dqs.critic_score(lambda x: dqs.log_target_times_T(q, x, T, True), T, 8, 0.6,
                                                               form="refit"), (64, 2), 10))
            _, grads = dqs.values_and_action_grads(q, a.unsqueeze(1), 1)
            dqs.track_temperature(T, dqs.temperature_from_critic(grads, 0.09), 1.0 if update == 0 else 0.5)
            draws.append(a)
        return T, torch.stack(draws)
    (t1, a1), (t100, a100) = run(1.0), run(100.0)
    assert math.isclose(t100.item(), 100 * t1.item(), rel_tol=1e-5)
    torch.testing.assert_close(a100, a1, rtol=0, atol=1e-4)


def test_temperature_anneal_is_log_linear():
    args = dqs.Args(temperature=1.0, temperature_final=0.01, temperature_anneal_steps=100)
    assert math.isclose(dqs.temperature_at(0, args), 1.0)
    assert math.isclose(dqs.temperature_at(50, args), 0.1)  # geometric midpoint
    assert math.isclose(dqs.temperature_at(10_000, args), 0.01)
    assert dqs.temperature_at(50, dqs.Args(temperature=0.3)) == 0.3

# ---------------------------------------------------------------------------------------------
# Not in the paper
def test_blended_score_target_has_far_less_variance_where_the_weights_concentrate():
    """At large t and small T the softmax weights sit on a few of the K samples; S_K's terms are then
    |grad Q| / T, the noise form's |z| / sqrt(h). For a Gaussian policy the blend's variance tends to 0 as K
    grows. Compared with the same R independent estimates as the closed-form test: the ratio of two
    sample variances over R = 400 repeats is known to about 10 %, so a factor 10 is a claim, not noise."""
    T, v0, K, R = 0.05, 0.02, 64, 400
    mu = torch.tensor([0.3], dtype=torch.float64)

    def q_fn(obs, a):
        return -T * (a - mu).pow(2).sum(-1) / (2 * v0)

    x_t, obs, t = torch.full((R, 1), 0.9, dtype=torch.float64), torch.zeros(R, 1, dtype=torch.float64), torch.ones(R).double()
    variances = {}
    for form in ("grad", "blend"):
        torch.manual_seed(0)
        variances[form] = float(dqs.mc_score_target(lambda a: q_fn(obs, a), x_t, t, T, K, form=form).var())
    # the regime in question: the weights concentrate (effective sample size 1 / sum w^2 well under K)
    w = torch.softmax(q_fn(None, x_t.unsqueeze(1) + torch.randn(R, K, 1, dtype=torch.float64)) / T, dim=1)
    assert (1 / w.pow(2).sum(1)).mean() < K / 4
    assert variances["blend"] < variances["grad"] / 10, variances


def test_log_det_tanh_jacobian():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64).reshape(-1, 1)
    torch.testing.assert_close(dqs.log_det_tanh_jacobian(x), torch.log(1 - torch.tanh(x) ** 2).sum(-1))
    assert torch.isfinite(dqs.log_det_tanh_jacobian(torch.tensor([[50.0, -50.0]]))).all()


def test_control_variate_is_exact_for_a_gaussian_policy():
    """For a quadratic critic, u - g is linear in z, so the plug-in coefficient is v0 / (v0 + h) and the
    control-variate estimate is the closed-form noised score itself, up to the 1e-4 ridge, already at K = 16.
    The tolerance bounds that ridge's bias, 1e-4 / Var_v(u - g) <= 1e-2 here, not a sampling error.
    (Where softmax(Q / T) puts all weight on one sample, the moments vanish under the ridge and the estimate
    falls back to the noise form, as the blend does; v0 = 0.5 keeps the weights spread here.)"""
    torch.manual_seed(0)
    T, v0, mu, R = 0.05, 0.5, 0.3, 64
    q = lambda a: -T * (a - mu).pow(2).sum(-1) / (2 * v0)
    x_t = torch.rand(R, 1, dtype=torch.float64) * 2 - 1
    for t in (0.5, 0.8, 1.0):
        h = dqs.Schedule().h(torch.tensor(t, dtype=torch.float64))
        est = dqs.mc_score_target(q, x_t, torch.full((R,), t, dtype=torch.float64), T, 16, form="cv")
        torch.testing.assert_close(est, -(x_t - mu) / (v0 + h), rtol=1e-2, atol=1e-2)


def test_critic_score_is_the_clean_gradient_up_to_the_switch_and_the_estimate_above():
    torch.manual_seed(0)
    q = dqs.SoftQNetwork(3, 2)
    obs, x, T = torch.randn(5, 1, 3), torch.randn(5, 2), 0.05
    score = dqs.critic_score(q.condition(obs), T, 8, 0.6, form="blend")
    xg = x.clone().requires_grad_(True)
    (clean,) = torch.autograd.grad(q(obs.squeeze(1), xg).sum(), xg)
    torch.testing.assert_close(score(x, torch.tensor(0.5)), clean / T)
    torch.manual_seed(1)
    above = score(x, torch.tensor(0.9))
    torch.manual_seed(1)
    torch.testing.assert_close(above, dqs.mc_score_target(q.condition(obs), x, torch.full((5,), 0.9), T, 8, form="blend"))


def test_critic_driven_sampler_on_a_gaussian_critic_has_euler_maruyamas_exact_moments():
    """With a quadratic critic the sampler's score is exact (control variate above the switch, the clean
    score -(x - mu) / v0 below it), so its samples have the mean and variance of Euler-Maruyama with that
    score, a linear recursion: m <- m - c g2 dt (m - mu), v <- (1 - c g2 dt)^2 v + g2 dt, c = 1 / (v0 + h(t))
    above the switch and 1 / v0 below. Tolerances: Z standard errors of a mean and of a variance."""
    torch.manual_seed(0)
    schedule, T, v0, mu, n, N, switch = dqs.Schedule(), 0.05, 0.5, 0.3, 20_000, 20, 0.6
    q = lambda a: -T * (a - mu).pow(2).sum(-1) / (2 * v0)
    x = dqs.sample_actions(dqs.critic_score(q, T, 16, switch, schedule, form="cv"), (n, 1), N, schedule, dtype=torch.float64)[:, 0]
    dt, m = 1.0 / N, 0.0
    v = schedule.h(torch.tensor(1.0, dtype=torch.float64)).item()
    for k in range(N):
        t = 1.0 - k * dt
        g2 = schedule.g2(torch.tensor(t, dtype=torch.float64)).item()
        c = 1 / v0 if t <= switch else 1 / (v0 + schedule.h(torch.tensor(t, dtype=torch.float64)).item())
        m, v = m - c * g2 * dt * (m - mu), (1 - c * g2 * dt) ** 2 * v + g2 * dt
    assert abs(x.mean().item() - m) < Z * math.sqrt(v / n)
    assert abs(x.var().item() - v) < Z * v * math.sqrt(2 / (n - 1))


def test_best_of_executes_the_draw_the_critic_values_most():
    """--eval-best-of m: per state, of m draws the action with the highest q; m = 1 is the policy itself."""
    obs = torch.tensor([[0.3], [-0.5]])
    draws = iter([torch.tensor([[-0.9], [0.2], [0.6], [0.1], [-0.6], [0.9]]), torch.tensor([[0.7], [-0.2]])])
    q = lambda o, a: -(a - o).pow(2).squeeze(-1)  # best: the draw nearest the state's own value
    assert torch.equal(dqs.best_of(lambda o: next(draws), q, obs, 3), torch.tensor([[0.2], [-0.6]]))
    assert torch.equal(dqs.best_of(lambda o: next(draws), q, obs, 1), torch.tensor([[0.7], [-0.2]]))

# ---------------------------------------------------------------------------------------------
# The skeleton and the loop: buffer, target updates, smoke runs (tiny: a few hundred steps, updates included)
def test_soft_update_moves_the_target_a_fraction_tau_towards_the_network():
    """The target critics' update, and the --score-ema average with tau = 1 - decay."""
    torch.manual_seed(0)
    net, average = dqs.ScoreNetwork(3, 2), dqs.ScoreNetwork(3, 2)  # different initial weights
    before = [p.clone() for p in average.parameters()]
    dqs.soft_update(average, net, 0.1)
    for p_avg, p_before, p in zip(average.parameters(), before, net.parameters()):
        torch.testing.assert_close(p_avg, 0.9 * p_before + 0.1 * p)
    assert all(p.grad is None for p in average.parameters())


# Gymnasium 1.x NEXT_STEP autoreset: the step after an episode ends must not enter the buffer.
class Countdown(gym.Env):
    """Observation = steps left; terminates after 3 steps, so a reset obs (3) never follows a 1 in a real transition."""

    observation_space = gym.spaces.Box(0, 3, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.left = 3
        return np.array([3.0], np.float32), {}

    def step(self, action):
        self.left -= 1
        return np.array([self.left], np.float32), 1.0, self.left == 0, False, {}


@pytest.mark.parametrize("module", [dqs, sac_baseline])
def test_autoreset_transition_never_enters_buffer(module):
    envs = gym.vector.SyncVectorEnv([Countdown], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    rb = module.ReplayBuffer(100, 1, 1, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    autoreset = np.zeros(1, dtype=bool)
    steps = 20
    for _ in range(steps):
        actions = np.zeros((1, 1), np.float32)
        next_obs, rewards, terminations, truncations, _ = envs.step(actions)
        rb.add(obs, next_obs, actions, rewards, terminations, keep=~autoreset)  # as in the training loop
        autoreset = np.logical_or(terminations, truncations)
        obs = next_obs
    o, no, r, d = rb.obs[: rb.size, 0], rb.next_obs[: rb.size, 0], rb.rewards[: rb.size], rb.terminations[: rb.size]
    assert rb.size == steps - steps // 4  # one step in four is the autoreset step
    torch.testing.assert_close(no, o - 1)  # every stored transition is a real one
    torch.testing.assert_close(d, (no == 0).float())
    assert (r == 1).all()


def run_script(script, *flags, cwd, timeout=240):
    return subprocess.run([sys.executable, os.path.join(HERE, script), *flags], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


TINY = {"sac_baseline.py": [], "dqs.py": ["--num-mc-samples", "8", "--num-diffusion-steps", "4"]}
COMMON = ["--env-id", "InvertedPendulum-v4", "--learning-starts", "100", "--batch-size", "32",
          "--eval-every", "150", "--eval-episodes", "2", "--no-cuda"]


def read_run(cwd):
    (run_dir,) = [os.path.join(cwd, "runs", d) for d in os.listdir(os.path.join(cwd, "runs"))]
    with open(os.path.join(run_dir, "summary.json")) as f:
        return run_dir, json.load(f)


def test_dqs_loop_calls_soft_update_with_tau_and_one_minus_the_score_ema_decay(tmp_path, monkeypatch):
    """The call sites: after every update the target critics move tau of the way, the policy's average 1 - decay.
    dqs.py runs as a script here, so its soft_update is spied on through the profiler hook."""
    calls = []
    sigterm = signal.getsignal(signal.SIGTERM)

    def spy(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "soft_update" and frame.f_code.co_filename.endswith("dqs.py"):
            calls.append((type(frame.f_locals["target"]).__name__, frame.f_locals["tau"]))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["dqs.py", *COMMON, *TINY["dqs.py"], "--total-timesteps", "150", "--score-ema", "0.9"])
    sys.setprofile(spy)
    try:
        runpy.run_path(os.path.join(HERE, "dqs.py"), run_name="__main__")
    finally:
        sys.setprofile(None)
        signal.signal(signal.SIGTERM, sigterm)  # the run makes SIGTERM raise KeyboardInterrupt
    taus = {name: [tau for n, tau in calls if n == name] for name in ("SoftQNetwork", "ScoreNetwork")}
    assert len(taus["ScoreNetwork"]) >= 10 and len(taus["SoftQNetwork"]) == 2 * len(taus["ScoreNetwork"]), calls[:4]
    assert all(math.isclose(tau, 0.005) for tau in taus["SoftQNetwork"])
    assert all(math.isclose(tau, 1 - 0.9) for tau in taus["ScoreNetwork"])


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
def test_smoke_train_eval_save_resume(script, tmp_path):
    out = run_script(script, *COMMON, *TINY[script], "--total-timesteps", "300", "--save-model", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    assert summary["global_step"] == 300 and summary["env_id"] == "InvertedPendulum-v4"
    for key in ("eval_return_mean", "eval_return_std", "sps", "wall_time_s", "seed", "args"):
        assert summary[key] is not None, key
    ckpt_path = os.path.join(run_dir, script.replace(".py", ".pt"))
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["step"] == 300 and ckpt["args"]["env_id"] == "InvertedPendulum-v4"
    # the updates ran: the losses were logged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(run_dir).Reload().Tags()["scalars"]
    expected = ["losses/qf_loss", "charts/SPS", "eval/episodic_return"]
    expected += ["losses/score_loss"] if script == "dqs.py" else ["losses/actor_loss", "eval/one_draw_return"]
    assert set(expected) <= set(tags), tags
    # SAC's headline acts with tanh(mean); its one stochastic draw is logged beside it, on the same starts
    assert set(summary["eval_beside_return_mean"]) == ({"one_draw"} if script == "sac_baseline.py" else set())

    out = run_script(script, *COMMON, *TINY[script], "--total-timesteps", "450", "--save-model", "--resume", ckpt_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    _, summary = read_run(tmp_path)
    assert summary["global_step"] == 450
    assert torch.load(ckpt_path, weights_only=True)["step"] == 450


RESUME_TINY = ["--env-id", "Pendulum-v1", "--learning-starts", "50", "--batch-size", "16", "--eval-every", "150",
               "--eval-episodes", "1", "--no-cuda", "--save-model"]
RESUME_TINY_DQS = ["--num-mc-samples", "4", "--num-diffusion-steps", "3", "--acting-mc-samples", "4"]


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
def test_resume_restores_the_replay_buffer_and_updates_from_its_first_step(script, tmp_path):
    """--save-model keeps the buffer's filled part and the random states beside the checkpoint; --resume restores
    them, so the resumed run samples its old data from its first step on instead of refilling (Pendulum's
    200-step episodes: the first run's 300 steps store 299 transitions, the step after the truncation being
    the autoreset's; the resumed run starts a fresh episode and adds all of its 100)."""
    flags = [*RESUME_TINY, *(RESUME_TINY_DQS if script == "dqs.py" else [])]
    out = run_script(script, *flags, "--total-timesteps", "300", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, first = read_run(tmp_path)
    name = script.removesuffix(".py")
    ckpt_path, buffer_path = os.path.join(run_dir, f"{name}.pt"), os.path.join(run_dir, f"{name}_buffer.pt")
    saved = torch.load(buffer_path, weights_only=True)
    assert saved["step"] == 300 and saved["buffer"]["size"] == 299
    assert set(saved["random"]) == {"python", "numpy", "torch", "cuda", "envs"}

    out = run_script(script, *flags, "--total-timesteps", "400", "--resume", ckpt_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refills" not in out.stderr, out.stderr[-2000:]
    _, resumed = read_run(tmp_path)
    assert resumed["global_step"] == 400 and torch.load(ckpt_path, weights_only=True)["step"] == 400
    assert resumed["num_updates"] == first["num_updates"] + 100  # an update at every resumed step: no refill
    after = torch.load(buffer_path, weights_only=True)["buffer"]
    assert after["size"] == 299 + 100
    for k in ("obs", "next_obs", "actions", "rewards", "terminations"):
        torch.testing.assert_close(after[k][:299], saved["buffer"][k], rtol=0, atol=0)


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
def test_the_best_evaluation_is_kept_beside_the_latest(script, tmp_path):
    """`{exp_name}_best.pt` holds the weights of the evaluation with the highest return, the summary its return."""
    flags = [*RESUME_TINY, *(RESUME_TINY_DQS if script == "dqs.py" else [])]
    out = run_script(script, *flags, "--total-timesteps", "300", "--eval-every", "100", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    best = torch.load(os.path.join(run_dir, f"{script.removesuffix('.py')}_best.pt"), weights_only=True)
    assert best["step"] in (100, 200, 300) and best["best_return"] == summary["best_eval_return"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    evals = {e.step: e.value for e in EventAccumulator(run_dir).Reload().Scalars("eval/episodic_return")}
    assert math.isclose(max(evals.values()), best["best_return"], rel_tol=1e-6) and evals[best["step"]] == max(evals.values())


def test_sigterm_ends_a_run_like_ctrl_c_with_video_checkpoint_and_summary(tmp_path):
    """What a cluster sends before preemption: the run stops cleanly, evaluates (recording a video), saves its
    checkpoint and summary, and --resume continues from there."""
    cmd = [sys.executable, os.path.join(HERE, "sac_baseline.py"), *COMMON, "--total-timesteps", "100000", "--save-model",
           "--capture-video"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not list(tmp_path.glob("runs/*/sac_baseline.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)  # the first checkpoint comes with the first evaluation, at step 150
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    step = summary["global_step"]
    assert summary["stopped"] == f"interrupted at step {step}" and 150 <= step < 100_000
    ckpt_path = os.path.join(run_dir, "sac_baseline.pt")
    assert torch.load(ckpt_path, weights_only=True)["step"] == step
    videos = sorted(os.listdir(os.path.join(run_dir, "videos")))
    assert "eval-step150-episode-0.mp4" in videos and f"eval-step{step}-episode-0.mp4" in videos, videos
    out = run_script("sac_baseline.py", *COMMON, "--total-timesteps", str(step + 20), "--resume", ckpt_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = read_run(tmp_path)[1]
    assert resumed["global_step"] == step + 20
    assert resumed["num_updates"] == summary["num_updates"] + 20  # its buffer came back with it: no refill


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
def test_speed_switches_run_and_a_compiled_checkpoint_resumes_eager(script, tmp_path):
    """--compile compiles the modules in place: same parameter names, so its checkpoints are the eager ones."""
    out = run_script(script, *COMMON, *TINY[script], "--total-timesteps", "200", "--save-model", "--compile",
                     "--matmul-precision", "medium", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    assert summary["args"]["compile"] and summary["args"]["matmul_precision"] == "medium"
    assert summary["global_step"] == 200 and summary["stopped"] is None
    assert np.isfinite(summary["eval_return_mean"])
    ckpt_path = os.path.join(run_dir, script.replace(".py", ".pt"))
    # an eager run loads it with load_state_dict's strict key check
    out = run_script(script, *COMMON, *TINY[script], "--total-timesteps", "250", "--resume", ckpt_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_run(tmp_path)[1]["global_step"] == 250


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphed_update_matches_eager_and_replays_draw_fresh_noise():
    """--cudagraphs replays the eager function's kernels: from the same state and seed, six graphed score
    updates (three eager warm-ups, a capture, replays) land on the eager parameters; a graphed sampler's
    replays draw new noise each time."""
    device = torch.device("cuda")
    obs, a_0 = torch.randn(6, 32, 5, device=device), torch.rand(6, 32, 2, device=device) * 2 - 1

    def make():
        torch.manual_seed(0)
        net, critic = dqs.ScoreNetwork(5, 2).to(device), dqs.SoftQNetwork(5, 2).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-4, capturable=True)

        def update(o, a):
            loss = dqs.score_matching_loss(net, critic.condition(o.unsqueeze(1)), o, a, 0.05, 16)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss

        return net, update

    (eager_net, eager_update), (graphed_net, update) = make(), make()
    graphed_update = dqs.CudaGraphed(update)
    for net_update in (eager_update, graphed_update):
        torch.manual_seed(1)
        for i in range(6):
            net_update(obs[i], a_0[i])
    for p, q in zip(eager_net.parameters(), graphed_net.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    sampler = dqs.CudaGraphed(lambda o: dqs.sample_actions(graphed_net.condition(o, 0.05), (1, 2), 10, device=device), warmup=1)
    draws = [sampler(obs[0, :1]).clone() for _ in range(3)]  # a warm-up, the capture's replay, a replay
    assert not torch.equal(draws[1], draws[2])


def test_dqs_runs_a_deepmind_control_task(tmp_path):
    """The paper's own suite through shimmy: dict observations flattened (cartpole: 3 positions + 2 velocities)."""
    out = run_script("dqs.py", *COMMON, *TINY["dqs.py"], "--env-id", "dm_control/cartpole-swingup-v0", "--total-timesteps", "150",
                     "--eval-episodes", "1", "--save-model", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    assert summary["global_step"] == 150 and summary["num_updates"] == 150 - 100 + 1
    assert 0.0 <= summary["eval_return_mean"] <= 1000.0  # rewards in [0, 1], 1000 steps
    score_net = torch.load(os.path.join(run_dir, "dqs.pt"), weights_only=True)["score_net"]
    assert score_net["fc_in.weight"].shape[1] == 5 + 1 + 2 * 128  # concat[s (5), a (1), emb(t), emb(T)]


def test_dqs_departures_run_exact_bounds_blend_annealing_score_ema_and_eval_best_of(tmp_path):
    out = run_script("dqs.py", *COMMON, *TINY["dqs.py"], "--total-timesteps", "200", "--exact-bounds", "--score-target", "blend",
                     "--temperature-final", "0.01", "--temperature-anneal-steps", "50", "--score-ema", "0.9",
                     "--eval-best-of", "3", "--eval-beside-best-of", "2", "--backup-score", "critic",
                     "--save-model", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    assert summary["eval_return_mean"] is not None
    assert set(summary["eval_beside_return_mean"]) == {"best_of_2"}  # the greedier evaluation beside the headline
    ckpt = torch.load(os.path.join(run_dir, "dqs.pt"), weights_only=True)
    # the policy's weights are an average of the score network's past weights: same shapes, lagging values
    assert ckpt["policy_net"].keys() == ckpt["score_net"].keys()
    assert not torch.equal(ckpt["policy_net"]["fc_out.weight"], ckpt["score_net"]["fc_out.weight"])


def test_temperature_scale_makes_t_follow_the_critic_and_logs_what_drives_it(tmp_path):
    """--temperature-scale: T leaves --temperature, is logged with the RMS action-gradient it follows, and resumes."""
    out = run_script("dqs.py", *COMMON, *TINY["dqs.py"], "--total-timesteps", "200", "--temperature-scale", "0.09", "--save-model",
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run_dir, summary = read_run(tmp_path)
    assert summary["temperature"] != 0.05 and summary["temperature_action_grad_rms"] > 0
    ckpt = torch.load(os.path.join(run_dir, "dqs.pt"), weights_only=True)
    assert math.isclose(float(ckpt["temperature"]), summary["temperature"], rel_tol=1e-6)


def test_divergence_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path):
    # a huge critic learning rate blows the critic up within a few hundred updates
    # (evaluated and checkpointed once at step 101, one update in, while the weights are still finite)
    flags = [*COMMON, *TINY["dqs.py"], "--eval-every", "101", "--total-timesteps", "3000", "--q-lr", "1e12", "--save-model"]
    out = run_script("dqs.py", *flags, cwd=tmp_path)
    assert_clean_error(out, "non-finite loss at step")
    run_dir, summary = read_run(tmp_path)
    ckpt = torch.load(os.path.join(run_dir, "dqs.pt"), weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["qf1"].values())
    assert ckpt["step"] < int(summary["stopped"].split("step ")[1].split()[0])

# ---------------------------------------------------------------------------------------------
# Command line: flags, --paper, the shared skeleton, bad input (one line naming the problem, a non-zero exit, no traceback)
@pytest.mark.parametrize("module", [dqs, sac_baseline])
def test_help_lists_the_flag_groups_in_order_and_flags_land_in_one_flat_args(module, monkeypatch, capsys):
    """--help (plain tyro over the flat Args): every flag, in the order of the groups (the experiment's, the
    algorithm's, for DQS our departures, speed); parsing fills Args, its own defaults included (exp_name)."""
    monkeypatch.setattr(sys, "argv", ["script", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        tyro.cli(module.Args)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    firsts = ["--exp-name", "--env-id"] + (["--paper"] if module is dqs else []) + ["--compile"]
    positions = [text.index(flag) for flag in firsts]
    assert positions == sorted(positions), positions
    assert all(f"--{f.name.replace('_', '-')}" in text for f in dataclasses.fields(module.Args))
    monkeypatch.setattr(sys, "argv", ["script"])
    assert tyro.cli(module.Args) == module.Args()
    assert module.Args().exp_name == module.__name__
    monkeypatch.setattr(sys, "argv", ["script", "--seed", "3", "--batch-size", "64", "--compile"])
    assert tyro.cli(module.Args) == module.Args(seed=3, batch_size=64, compile=True)
    if module is dqs:
        monkeypatch.setattr(sys, "argv", ["script", "--score-target", "blend", "--mc-chunk-size", "8"])
        assert dqs.parse_args() == dqs.Args(score_target="blend", mc_chunk_size=8)


def test_paper_flag_sets_the_authors_values_and_explicit_flags_win(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dqs.py", "--paper"])
    args = dqs.parse_args()
    assert args.paper and args.num_mc_samples == 1000 and args.num_diffusion_steps == 500
    assert args.acting_score == "network" and args.exact_bounds is False and args.score_target == "grad"
    assert args.score_ema == 0.0 and args.eval_best_of == 1
    assert args == dataclasses.replace(dqs.Args(), paper=True, **dqs.PAPER)
    monkeypatch.setattr(sys, "argv", ["dqs.py", "--paper", "--num-diffusion-steps", "20", "--seed", "7"])
    args = dqs.parse_args()
    assert args.num_diffusion_steps == 20 and args.seed == 7 and args.num_mc_samples == 1000 and args.score_target == "grad"
    monkeypatch.setattr(sys, "argv", ["dqs.py"])
    assert dqs.parse_args() == dqs.Args()  # without --paper, our defaults


def shared_blocks(path: str) -> dict[str, list[str]]:
    """The lines between `# --- shared: NAME ---` and `# --- end shared: NAME ---`, by name."""
    blocks, name = {}, None
    with open(os.path.join(HERE, path)) as f:
        for number, line in enumerate(f, 1):
            begin, end = re.match(r"\s*# --- shared: (.+) ---$", line), re.match(r"\s*# --- end shared: (.+) ---$", line)
            if begin:
                assert name is None, f"{path}:{number}: block {begin[1]!r} opens inside {name!r}"
                assert begin[1] not in blocks, f"{path}:{number}: block {begin[1]!r} opens twice"
                name, blocks[begin[1]] = begin[1], []
            elif end:
                assert end[1] == name, f"{path}:{number}: {end[1]!r} closes {name!r}"
                name = None
            elif name is not None:
                blocks[name].append(line)
    assert name is None, f"{path}: block {name!r} is never closed"
    return blocks


def test_shared_blocks_are_identical_in_both_scripts():
    """Each script runs alone, so the skeleton is written out in both; a block edited in one file only fails here."""
    dqs_blocks, sac_blocks = shared_blocks("dqs.py"), shared_blocks("sac_baseline.py")
    assert len(dqs_blocks) >= 10, list(dqs_blocks)
    assert list(dqs_blocks) == list(sac_blocks), "blocks missing or out of order: " + str(set(dqs_blocks) ^ set(sac_blocks))
    for name in dqs_blocks:
        assert dqs_blocks[name] == sac_blocks[name], f"shared block {name!r} differs:\n" + "".join(
            difflib.unified_diff(sac_blocks[name], dqs_blocks[name], "sac_baseline.py", "dqs.py"))


def test_scripts_import_no_module_of_this_project():
    for script in ("dqs.py", "sac_baseline.py"):
        tree = ast.parse(open(os.path.join(HERE, script)).read())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        local = {os.path.splitext(p)[0] for p in os.listdir(HERE) if p.endswith(".py")} | {"benchmark", "docs"}
        assert not imported & local, (script, imported & local)


def assert_clean_error(out, *words):
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and all(w in last for w in words), last


def run_in_process(script, *flags, monkeypatch, capsys):
    """`python script flags` run in this process (its __main__ block via runpy) until it exits: a bad-input case
    costs milliseconds instead of a Python start with torch and MuJoCo (seconds). An exception other than
    SystemExit escapes to the test, as a traceback would. Returns what run_script returns: returncode, stderr."""
    monkeypatch.setattr(sys, "argv", [script, *flags])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(os.path.join(HERE, script), run_name="__main__")
    return subprocess.CompletedProcess([script, *flags], exit_info.value.code, "", capsys.readouterr().err)


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
@pytest.mark.parametrize("flags, words", [
    (["--env-id", "NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
    (["--env-id", "CartPole-v1"], ["Discrete"]),
    (["--total-timesteps", "0"], ["--total-timesteps"]),
    (["--batch-size", "512", "--buffer-size", "100"], ["--batch-size", "--buffer-size"]),
    (["--resume", "no/such/checkpoint.pt"], ["does not exist"]),
    (["--env-id", "dm_control/no-such-task-v0"], ["no-such-task"]),
    (["--env-id", "benchmark.no_such_module:X-v0"], ["no_such_module"]),
    (["--cudagraphs", "--no-cuda"], ["--cudagraphs", "CUDA"]),
] + ([] if importlib.util.find_spec("wandb") else [(["--track"], ["pip install wandb"])]))
def test_bad_input(script, flags, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run_in_process(script, "--env-id", "InvertedPendulum-v4", *flags, monkeypatch=monkeypatch, capsys=capsys), *words)


@pytest.mark.parametrize("flags, words", [(["--score-ema", "1"], ["--score-ema"]), (["--eval-best-of", "0"], ["--eval-best-of"]),
                                          (["--sigma-max", "1e-6"], ["--sigma-max", "--sigma-min"])])
def test_dqs_bad_input(flags, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run_in_process("dqs.py", "--env-id", "InvertedPendulum-v4", *flags, monkeypatch=monkeypatch, capsys=capsys), *words)


@pytest.mark.parametrize("script", ["sac_baseline.py", "dqs.py"])
def test_bad_input_in_a_real_process(script, tmp_path):
    """The same as a separate process: exit code 2 and one line on stderr."""
    out = run_script(script, "--env-id", "InvertedPendulum-v4", "--total-timesteps", "0", cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert_clean_error(out, "--total-timesteps")


def test_foreign_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def resume(script, ckpt, *flags):
        return run_in_process(script, "--env-id", "InvertedPendulum-v4", "--resume", str(ckpt), *flags, monkeypatch=monkeypatch, capsys=capsys)

    sac_ckpt = tmp_path / "sac.pt"
    torch.save({"algo": "sac", "env_id": "InvertedPendulum-v4", "step": 1}, sac_ckpt)
    assert_clean_error(resume("dqs.py", sac_ckpt), "sac")
    other_env = tmp_path / "hopper.pt"
    torch.save({"algo": "dqs", "env_id": "Hopper-v4", "step": 1}, other_env)
    assert_clean_error(resume("dqs.py", other_env), "Hopper-v4")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert_clean_error(resume("sac_baseline.py", junk), "cannot read")
    partial = tmp_path / "partial.pt"  # e.g. resumed with --score-ema from a run without it
    torch.save({"algo": "dqs", "env_id": "InvertedPendulum-v4", "step": 1}, partial)
    assert_clean_error(resume("dqs.py", partial), "has no 'score_net'")
    fuller = tmp_path / "fuller.pt"  # e.g. a --score-ema run resumed with --score-ema 0: its average would be lost
    torch.save({"algo": "dqs", "env_id": "InvertedPendulum-v4", "step": 1, "policy_net": {}}, fuller)
    assert_clean_error(resume("dqs.py", fuller, "--score-ema", "0"), "'policy_net', which this run would drop")

# ---------------------------------------------------------------------------------------------
# Toy bandit: DQS against the exact Boltzmann policy exp(r / T) on [-1, 1]^2, and against SAC
import toy_bandit  # noqa: E402

TOY_REWARD = toy_bandit.Args().reward
TOY_T = toy_bandit.Args().temperature
# The sampler's own bias at the paper's sigma_max = 1, measured with an exact score in `python
# benchmark/speed.py --fidelity` (the major mode's mass 0.67 instead of 0.70 at N >= 50): a known, documented error, so
# mass checks below allow it on top of the sampling noise.
PRIOR_MISMATCH_BIAS = 0.03


def toy_exact():
    reward_fn, centers = toy_bandit.make_reward(TOY_REWARD)
    return reward_fn, centers, toy_bandit.exact_policy(reward_fn, TOY_T)


def test_toy_exact_policy_has_several_modes():
    """The default reward is a real test of mode coverage: at least three modes hold 10% of the mass."""
    _, centers, (grid, p) = toy_exact()
    mass = toy_bandit.mode_masses(grid, centers, p)
    assert math.isclose(mass.sum().item(), 1.0, rel_tol=1e-9)
    assert (mass > 0.1).sum() >= 3


def test_toy_estimator_driven_sampler_has_the_boltzmann_mode_masses():
    """At the paper's defaults (K = 1000, N = 50, sigma_max = 1) the estimator and sampler together put
    every mode's mass within Z binomial standard errors (n = 1000) plus the documented prior-mismatch
    bias of the exact policy's."""
    reward_fn, centers, exact = toy_exact()
    n = 1000
    d = toy_bandit.distances(toy_bandit.estimator_driven_actions(reward_fn, n, 1000, 50, TOY_T), exact, centers)
    for k, (m, p) in enumerate(zip(d["mode_mass"], d["exact_mode_mass"])):
        tol = Z * math.sqrt(p * (1 - p) / n) + PRIOR_MISMATCH_BIAS
        assert abs(m - p) < tol, f"mode {k}: mass {m:.3f}, exact {p:.3f}, tolerance {tol:.3f}"


def test_toy_distances_count_diverged_samples_as_error():
    """A sampler that diverges (NaN actions) must not look good: non-finite samples fall in no bin and
    no mode: a quarter of the samples lost puts the TV at 0.25 or more whatever the rest do."""
    reward_fn, centers, exact = toy_exact()
    good = toy_bandit.exact_samples(exact, 1000)
    bad = good.clone()
    bad[::4] = float("nan")
    d_good, d_bad = toy_bandit.distances(good, exact, centers), toy_bandit.distances(bad, exact, centers)
    assert d_good["non_finite"] == 0.0 and math.isclose(d_bad["non_finite"], 0.25, abs_tol=1e-12)
    assert math.isclose(sum(d_bad["mode_mass"]), 0.75, rel_tol=1e-9)
    assert d_bad["tv"] >= 0.25 and d_bad["tv"] > d_good["tv"]


@pytest.fixture(scope="module")
def toy_trained():
    """`python toy_bandit.py` at its defaults (learned critics), with n = 2000 samples per method."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        reward_fn, centers, exact = toy_exact()
        args = toy_bandit.Args(num_samples=2000)
        samples = toy_bandit.run(args, reward_fn, progress=False)
        floor = toy_bandit.distances(toy_bandit.exact_samples(exact, args.num_samples), exact, centers)
        return {name: toy_bandit.distances(s, exact, centers) for name, s in samples.items()}, floor
    finally:
        torch.set_num_threads(threads)


# `python toy_bandit.py` at its defaults (the refit acting) measured DQS's largest mode-mass error at 0.032
# with n = 10,000 samples (docs/data/toy_bandit_refit.json). The fixture's n = 2000 measurement may differ
# from it by Z standard errors of the difference of two mass estimates, sqrt(v / 2000 + v / 10,000) with v <= 0.25.
TOY_DQS_MAX_MASS_ERROR = 0.032


@pytest.mark.slow
def test_toy_dqs_covers_every_mode_with_about_the_right_mass(toy_trained):
    """Every mode holds at least half its exact mass (coverage), and the largest mass error is no worse
    than the recorded run's (docs/data/toy_bandit_refit.json) beyond sampling noise."""
    d = toy_trained[0]["dqs"]
    for k, (m, p) in enumerate(zip(d["mode_mass"], d["exact_mode_mass"])):
        assert m > p / 2, f"mode {k} not covered: mass {m:.3f}, exact {p:.3f}"
    tol = Z * math.sqrt(0.25 / 2000 + 0.25 / 10_000)
    assert d["max_mode_mass_error"] < TOY_DQS_MAX_MASS_ERROR + tol, d


@pytest.mark.slow
def test_toy_sac_is_far_from_the_boltzmann_policy(toy_trained):
    """SAC's single Gaussian cannot hold four modes. Its TV to the exact policy exceeds DQS's by more than
    the TV that n exact samples already show (the histogram's noise floor at this n), and its worst
    mode mass is further off than DQS's."""
    results, floor = toy_trained
    sac, dqs_ = results["sac"], results["dqs"]
    assert sac["tv"] > dqs_["tv"] + floor["tv"], (sac["tv"], dqs_["tv"], floor["tv"])
    assert sac["max_mode_mass_error"] > dqs_["max_mode_mass_error"]


def test_toy_bandit_cli_writes_picture_and_numbers(tmp_path):
    out = tmp_path / "toy.png"
    cmd = [sys.executable, os.path.join(HERE, "toy_bandit.py"), "--iterations", "10", "--warmup", "200",
           "--num-samples", "1000", "--num-diffusion-steps", "5", "--num-mc-samples", "8", "--acting-mc-samples", "8",
           "--collect-every", "5", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 10_000
    numbers = json.loads(out.with_suffix(".json").read_text())
    assert "target" not in numbers  # the bias row of the paper's unsquashed target: not with exact bounds (the default)
    for name in ("dqs", "sac", "n exact"):
        assert 0.0 <= numbers[name]["tv"] <= 1.0
        assert math.isclose(sum(numbers[name]["mode_mass"]), 1.0, rel_tol=1e-9)
    assert numbers["args"]["num_samples"] == 1000
    assert "TV" in proc.stdout and "dqs" in proc.stdout


@pytest.mark.parametrize("flags, words", [(["--reward", "nope"], ["unknown --reward"]),
                                          (["--iterations", "0"], ["--iterations must be positive"]),
                                          (["--sigma-max", "1e-6"], ["--sigma-max", "--sigma-min"])])
def test_toy_bandit_bad_input(flags, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(run_in_process("toy_bandit.py", "--out", str(tmp_path / "x.png"), *flags, monkeypatch=monkeypatch, capsys=capsys), *words)
    assert not (tmp_path / "x.png").exists()
