"""Diffusion Q-Sampling (DQS): the policy is a diffusion model that samples pi(a|s) ~ exp(Q(s,a) / T).

    python dqs.py --env-id Humanoid-v4
    python dqs.py --env-id InvertedPendulum-v4 --num-mc-samples 16 --num-diffusion-steps 20 --no-cuda

Jain, Akhound-Sadegh, Ravanbakhsh, "Sampling from Energy-based Policies using Diffusion" (arXiv
2410.01312, RLC 2025). The score network is trained on the iDEM Monte-Carlo score target
(Akhound-Sadegh et al., arXiv 2402.06121) of the Boltzmann policy of the twin critics, and actions
are drawn by Euler-Maruyama on the reverse variance-exploding SDE. Defaults are the authors' code
defaults unless `--help` says ours. Same skeleton as sac_baseline.py: `diff sac_baseline.py
dqs.py` shows what DQS changes. Policies act in the normalised box [-1, 1]^d; the env's bounds are
applied only when stepping the env.
"""
import copy
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from rl_common import (CudaGraphed, ExperimentArgs, ReplayBuffer, SpeedArgs, all_finite, check_common_args, check_env, evaluate,
                       fail, load_checkpoint, make_env, parse_args, save_checkpoint, soft_update, start_run)

ALGO = "dqs"


@dataclass
class AlgorithmArgs:
    """DQS as in the paper, with the authors' code defaults where the help does not say ours"""

    env_id: str = "Humanoid-v4"
    """the id of the environment (MuJoCo, or DeepMind Control as dm_control/cartpole-swingup-v0)"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiments"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient"""
    batch_size: int = 256
    """the batch size of sample from the replay memory"""
    learning_starts: int = 10_000
    """timestep to start learning (uniform-random actions before it)"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer"""
    score_lr: float = 3e-4
    """the learning rate of the score network optimizer"""
    temperature: float = 0.05
    """temperature T of the target policy exp(Q/T) (initial value when annealed; the authors' 0.05 was set for DMC rewards)"""
    temperature_final: float | None = None
    """if set, T is annealed log-linearly from --temperature to this value"""
    temperature_anneal_steps: int = 1_000_000
    """number of updates over which T is annealed"""
    num_mc_samples: int = 1000
    """K, the number of perturbed actions in the Monte-Carlo score target"""
    num_diffusion_steps: int = 50
    """N, Euler-Maruyama steps of the reverse SDE (not the paper's: 50, from the toy bandit's table; authors: 500)"""
    sigma_min: float = 1e-5
    """smallest noise scale of the variance-exploding SDE"""
    sigma_max: float = 1.0
    """largest noise scale of the variance-exploding SDE (h(1) = sigma_max^2 - sigma_min^2)"""


@dataclass
class NotInThePaperArgs:
    """departures from the paper, on by default where docs/results.md measured them to learn; --paper turns them all off"""

    paper: bool = False
    """the authors' configuration: their K, N, target and sampler, no departure below (explicit flags still win)"""
    acting_score: Literal["network", "critic"] = "critic"
    """not the paper's: the score that drives the sampler that acts and evaluates: 'network' (s_theta, the paper's) or
    'critic' (grad Q / T for t <= --clean-score-until, the blend estimate above; the network then serves the backup)"""
    acting_mc_samples: int = 64
    """K of the critic-driven acting sampler's estimate (not the paper's; 64: toy TV 0.08 at N = 50)"""
    clean_score_until: float = 0.6
    """the critic-driven sampler uses one critic gradient, the clean score, for t up to this (not the paper's)"""
    exact_bounds: bool = True
    """not the paper's: Q at tanh(x) plus the tanh log-Jacobian, so that tanh(x) is exactly Boltzmann on the box"""
    score_target: Literal["grad", "blend"] = "blend"
    """'grad': the paper's S_K; 'blend' (not the paper's): mixed with the same samples' noise form, far less variance at large t"""
    score_ema: float = 0.995
    """not the paper's (0): the network samples with an exponential moving average of its weights, this decay per update"""
    eval_best_of: int = 1
    """if > 1 (not the paper's), evaluation acts with the one of this many policy samples that min(Q1, Q2) values most"""


# What --paper restores: the authors' code defaults for everything above that is ours.
PAPER = dict(num_mc_samples=1000, num_diffusion_steps=500, acting_score="network", exact_bounds=False, score_target="grad",
             score_ema=0.0, eval_best_of=1)


@dataclass
class DQSSpeedArgs(SpeedArgs):  # the shared speed flags and the score target's own
    """the same algorithm, faster (off by default)"""

    mc_chunk_size: int | None = None
    """perturbed actions per chunk of the score target (default: 2048 // batch on CPU, all K on CUDA)"""


@dataclass
class Args(DQSSpeedArgs, NotInThePaperArgs, AlgorithmArgs, ExperimentArgs):  # --help: one section per class, this order reversed
    exp_name: str = os.path.basename(__file__)[: -len(".py")]


def check_args(args: Args):
    check_common_args(args, ["temperature", "temperature_anneal_steps", "num_mc_samples", "num_diffusion_steps", "sigma_min",
                             "eval_best_of", "acting_mc_samples"], optional=["temperature_final", "mc_chunk_size"])
    if not 0 <= args.clean_score_until <= 1:
        fail(f"--clean-score-until must be in [0, 1], got {args.clean_score_until}")
    if args.sigma_max <= args.sigma_min:
        fail(f"--sigma-max ({args.sigma_max}) must be larger than --sigma-min ({args.sigma_min})")
    if not 0 <= args.score_ema < 1:
        fail(f"--score-ema must be in [0, 1), got {args.score_ema}")


# ---------------------------------------------------------------------------------------------
# Critic: Q(s, a), two hidden layers of 256.
class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_dim = obs_dim
        self.fc1 = nn.Linear(obs_dim + act_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        orthogonal_init(self)

    def forward(self, obs, actions):
        return self.condition(obs)(actions)

    def condition(self, obs):
        """This critic at fixed states as a function Q(s, .) of actions; obs (B, 1, obs_dim) against actions
        (B, K, act_dim) gives the K actions' values at each state. Speed, same function: the first layer is
        W [s; a] + b = (W_s s + b) + W_a a, and the bracket is computed once for all the K actions (about
        1.1x on the score target at Humanoid sizes and K >= 256 on a CPU, docs/speed.md)."""
        w_s, w_a = self.fc1.weight.split([self.obs_dim, self.fc1.in_features - self.obs_dim], dim=1)
        fixed = F.linear(obs, w_s, self.fc1.bias)
        return lambda actions: self.fc3(F.relu(self.fc2(F.relu(fixed + F.linear(actions, w_a))))).squeeze(-1)


def orthogonal_init(module: nn.Module):
    """The authors' initialisation of every Linear layer, output layers too: orthogonal, gain sqrt(2), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, math.sqrt(2))
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Noise process: a variance-exploding SDE with a geometric schedule, t in [0, 1].
#   a_t = a_0 + sqrt(h(t)) eps,   h(t) = sigma_min^2 (r^(2t) - 1),   r = sigma_max / sigma_min
#   g(t)^2 = dh/dt = 2 ln(r) sigma_min^2 r^(2t)
def noise_variance(t, sigma_min: float = 1e-5, sigma_max: float = 1.0):
    """h(t), the variance added to a clean action by time t (expm1 keeps it accurate near t = 0)."""
    log_r = math.log(sigma_max / sigma_min)
    return sigma_min**2 * torch.expm1(2 * log_r * t)


def diffusion_g2(t, sigma_min: float = 1e-5, sigma_max: float = 1.0):
    """g(t)^2 = dh/dt, the squared diffusion coefficient of the forward SDE."""
    log_r = math.log(sigma_max / sigma_min)
    return 2 * log_r * sigma_min**2 * torch.exp(2 * log_r * t)


# ---------------------------------------------------------------------------------------------
# Score network s_theta(s, a_t, t, T): the temperature is an input so that T can be annealed.
def sinusoidal_embedding(x, dim: int = 128, max_period: float = 1000.0):
    """emb(x) = [sin(x f_k), cos(x f_k)], f_k = max_period^(-k / (dim/2 - 1)), k = 0 .. dim/2 - 1.

    As in the authors' code, x is t in [0, 1] (or T) itself, with no scale factor: the angles run from
    x / 1000 to x radians, a smooth code of t. (DDPM's code of 1000 integer steps would put up to 1000 t
    into the angles and swamp the state and action inputs of the first layer.)"""
    f = torch.exp(-math.log(max_period) * torch.arange(dim // 2, device=x.device, dtype=x.dtype) / (dim // 2 - 1))
    angle = x.unsqueeze(-1) * f
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class ScoreNetwork(nn.Module):
    """s_theta(s, a_t, t, T): concat[s, a_t, emb(t), emb(T)] -> Linear 256, GELU, two residual blocks
    x + GELU(Linear(x)), Linear to the action dimension."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, emb_dim: int = 128):
        super().__init__()
        self.obs_dim, self.act_dim, self.emb_dim = obs_dim, act_dim, emb_dim
        self.fc_in = nn.Linear(obs_dim + act_dim + 2 * emb_dim, hidden)
        self.res1 = nn.Linear(hidden, hidden)
        self.res2 = nn.Linear(hidden, hidden)
        self.fc_out = nn.Linear(hidden, act_dim)
        orthogonal_init(self)

    def forward(self, obs, x, t, temperature):
        """obs (B, obs_dim), x (B, act_dim); t and temperature (B,) or one value for all rows."""
        t, temperature = (torch.as_tensor(v, dtype=x.dtype, device=x.device).expand(x.shape[:1]) for v in (t, temperature))
        h = self.fc_in(torch.cat([obs, x, sinusoidal_embedding(t, self.emb_dim), sinusoidal_embedding(temperature, self.emb_dim)], -1))
        return self.body(h)

    def body(self, h):
        h = F.gelu(h)
        h = h + F.gelu(self.res1(h))
        h = h + F.gelu(self.res2(h))
        return self.fc_out(h)

    def condition(self, obs, temperature):
        """This network at fixed states and T as a function score(x, t) of the sampler's x and one t.

        Speed, same function: the first layer is linear, W [s; x; emb t; emb T] + b = (W_s s + W_T emb T + b)
        + W_x x + W_t emb t, so the bracket is computed once per sampler call instead of once per step,
        and emb(t) once per step for the whole batch (1.7x on the sampler, docs/speed.md)."""
        w_s, w_x, w_t, w_temp = self.fc_in.weight.split([self.obs_dim, self.act_dim, self.emb_dim, self.emb_dim], dim=1)
        temperature = torch.as_tensor(temperature, dtype=obs.dtype, device=obs.device)
        fixed = F.linear(obs, w_s) + F.linear(sinusoidal_embedding(temperature, self.emb_dim), w_temp, self.fc_in.bias)
        return lambda x, t: self.body(fixed + F.linear(x, w_x) + F.linear(sinusoidal_embedding(t, self.emb_dim), w_t))


# ---------------------------------------------------------------------------------------------
# Monte-Carlo score target (the iDEM estimator). The noised Boltzmann policy is
#   p_t(a_t) = E_z[ exp(Q(s, a_t + sqrt(h(t)) z) / T) ] / Z,  z ~ N(0, I),
# so with K samples z_i its score is estimated by
#   S_K(a_t) = grad_{a_t} [ logsumexp_i Q(s, a_t + sqrt(h(t)) z_i) / T - log K ]
#            = sum_i softmax_i(Q_i / T) grad_a Q_i / T,
# a self-normalised importance-weighted mean of the critic's action-gradients.
def mc_score_target(q_at, a_t, t, temperature, num_samples: int, sigma_min: float = 1e-5,
                    sigma_max: float = 1.0, *, form: str = "grad", chunk_size: int | None = None):
    """S_K for noisy actions a_t (B, act_dim) at times t (B,), for any differentiable critic at the batch's
    states q_at(actions (B, n, act_dim)) -> Q (B, n), e.g. SoftQNetwork.condition(obs (B, 1, obs_dim)). A
    constant target: only action-gradients are taken. form="blend" is our lower-variance variant (below)."""
    batch, act_dim = a_t.shape
    if chunk_size is None:
        chunk_size = max(1, CPU_CHUNK_ROWS // batch) if a_t.device.type == "cpu" else num_samples
    temperature = torch.as_tensor(temperature, dtype=a_t.dtype, device=a_t.device).reshape(-1, 1)  # (1, 1) or (B, 1)
    sqrt_h = noise_variance(t, sigma_min, sigma_max).sqrt().reshape(batch, 1, 1)
    z = torch.randn(batch, num_samples, act_dim, device=a_t.device, dtype=a_t.dtype)
    a_i = a_t.detach().unsqueeze(1) + sqrt_h * z  # the K perturbed actions, (B, K, act_dim)
    q, grad_q = values_and_action_grads(q_at, a_i, chunk_size)  # (B, K), (B, K, act_dim)
    w = torch.softmax(q / temperature, dim=1)  # softmax_i(Q_i / T)
    s_k = (w.unsqueeze(-1) * grad_q).sum(1) / temperature
    if form == "blend":
        return blend_with_noise_form(s_k, w, z, sqrt_h.reshape(batch, 1))
    return s_k


# On the CPU the B x K perturbed actions are evaluated in chunks of about CPU_CHUNK_ROWS: the critics'
# activations then stay in cache instead of streaming B x K x 256 floats through memory (2-2.5x at
# K = 1000, docs/speed.md). The z draws are made before chunking, so the result does not depend on it.
CPU_CHUNK_ROWS = 2048


def values_and_action_grads(q_at, actions, chunk_size: int):
    """Q and grad_a Q at actions (B, K, act_dim), chunk_size samples at a time. Results are written into
    buffers allocated up front: per-chunk lists fragmented the CPU heap (4.7x the peak memory at K = 4096)."""
    q, grad_q = actions.new_empty(actions.shape[:2]), torch.empty_like(actions)
    for start in range(0, actions.shape[1], chunk_size):
        chunk = slice(start, start + chunk_size)
        a = actions[:, chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            q_chunk = q_at(a)
            grad_q[:, chunk] = torch.autograd.grad(q_chunk.sum(), a)[0]
        q[:, chunk] = q_chunk.detach()
    return q, grad_q


def blend_with_noise_form(s_k, w, z, sqrt_h):
    """Not the paper's (--score-target blend). The same samples give a second estimate of the same score by
    differentiating the Gaussian kernel instead of Q: E_w[a_i - a_t] / h(t) = E_w[z] / sqrt(h) (the noise form).
    S_K is precise while the perturbations are small against Q's curvature (small t); at large t, where
    softmax(Q / T) puts nearly all weight on one sample, its terms are |grad Q| / T, hundreds at T = 0.05,
    while the noise form's are bounded by |z| / sqrt(h). The blend takes, per action dimension,
        alpha S_K + (1 - alpha) E_w[z] / sqrt(h),   alpha = Var_w(z) / Var(z),
    which is S_K when the weights are uniform and the noise form when one sample takes all the weight; for a
    Gaussian policy N(mu, v) and large K, alpha tends to v / (v + h), where the estimate has no variance."""
    z_mean = (w.unsqueeze(-1) * z).sum(1)  # E_w[z], (B, act_dim)
    var_w = (w.unsqueeze(-1) * (z - z_mean.unsqueeze(1)).pow(2)).sum(1)
    var = z.var(1, unbiased=False)
    alpha = torch.where(var > 0, var_w / var, 1.0).clamp(0.0, 1.0)  # K = 1: no spread, S_K alone
    return torch.where(sqrt_h > 0, alpha * s_k + (1 - alpha) * z_mean / sqrt_h, s_k)  # t = 0: no noise form


def energy_q(q_at, x, temperature, exact_bounds: bool = False):
    """T log p(x) + const for the density p of the pre-tanh x that the sampler targets (Q/T is the log-density).
    The paper queries Q at the unsquashed x, also outside [-1, 1], so tanh(x) is only roughly Boltzmann. With
    exact bounds a = tanh(x) ~ exp(Q(s, a) / T) on the box: T log p(x) = Q(s, tanh x) + T sum_d log(1 - tanh(x_d)^2)."""
    if not exact_bounds:
        return q_at(x)
    return q_at(torch.tanh(x)) + temperature * log_det_tanh_jacobian(x)


def log_det_tanh_jacobian(x):
    """sum_d log(1 - tanh(x_d)^2), written stably as 2 (log 2 - x - softplus(-2x))."""
    return (2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))).sum(-1)


# ---------------------------------------------------------------------------------------------
# The score loss: denoising score matching of noised replay actions against S_K.
def score_matching_loss(score_net, q_at, obs, a_0, temperature, num_samples: int, sigma_min: float = 1e-5,
                        sigma_max: float = 1.0, *, form: str = "grad", chunk_size: int | None = None):
    """For replay states obs and actions a_0, with q_at the critic at those states (see mc_score_target),
    t ~ U(0, 1) per row, a_t = a_0 + sqrt(h(t)) eps, lambda(t) = h(t) + 1e-3:
        loss = mean_b lambda(t) mean_d (s_theta(s, a_t, t, T) - S_K(a_t))^2."""
    t = torch.rand(a_0.shape[0], device=a_0.device, dtype=a_0.dtype)
    h_t = noise_variance(t, sigma_min, sigma_max)
    a_t = a_0 + h_t.sqrt().unsqueeze(-1) * torch.randn_like(a_0)
    target = mc_score_target(q_at, a_t, t, temperature, num_samples, sigma_min, sigma_max, form=form, chunk_size=chunk_size)
    lambda_t = h_t + 1e-3
    return (lambda_t * (score_net(obs, a_t, t, temperature) - target).pow(2).mean(-1)).mean()


# ---------------------------------------------------------------------------------------------
# Sampler: Euler-Maruyama on the reverse SDE, dx = -g(t)^2 score dt + g(t) dw run backwards in time.
@torch.no_grad()
def sample_actions(score_fn, shape, num_steps: int, sigma_min: float = 1e-5, sigma_max: float = 1.0, *,
                   device=None, dtype=torch.float32):
    """x_1 ~ N(0, h(1) I), then for t = 1, 1 - 1/N, ..., 1/N with dt = 1/N:
        x <- x + g(t)^2 score(x, t) dt + g(t) sqrt(dt) z,   z ~ N(0, I)
    (no final noise-free step, as in the authors' code). score_fn(x, t) is any score function of x
    (shape `shape`) and a 0-dim t, e.g. ScoreNetwork.condition(obs, T). Returns the pre-tanh samples x;
    the executed action is tanh(x)."""
    dt = 1.0 / num_steps
    h_1 = sigma_min**2 * math.expm1(2 * math.log(sigma_max / sigma_min))
    x = math.sqrt(h_1) * torch.randn(shape, device=device, dtype=dtype)
    t_grid = torch.arange(num_steps, 0, -1, device=device, dtype=dtype) * dt  # t = 1, 1 - 1/N, ..., 1/N, made once
    for t, g2 in zip(t_grid, diffusion_g2(t_grid, sigma_min, sigma_max)):  # 0-dim views: no copy per step
        x = x + g2 * score_fn(x, t) * dt + (g2 * dt).sqrt() * torch.randn_like(x)
    return x


# ---------------------------------------------------------------------------------------------
# Not the paper's: the sampler driven by the critic itself. Offline, a score network trained on the exact
# noised score still samples 2x too wide, because it cannot fit the score where h(t) is comparable to the
# policy's variance (t > 0.75 at the default schedule) and that is where the sampler sets the spread; the
# Monte-Carlo estimate of the same score from the critic is accurate there (docs/diagnosis.md). Below
# that, one critic gradient is the noised score to O(h): p_t = p * N(0, h) -> p as h -> 0.
def critic_score(q_at, temperature, num_samples: int, clean_until: float, sigma_min: float = 1e-5,
                 sigma_max: float = 1.0, *, chunk_size: int | None = None):
    """score(x, t) for sample_actions from the critic at fixed states, q_at as for mc_score_target, no network:
        t <= clean_until:  grad_x Q(s, x) / T                      (the clean score, one critic gradient)
        t >  clean_until:  the blend estimate with K = num_samples (mc_score_target(form="blend"))
    One branch per sampler step, read from t on the host (one sync per step on a GPU)."""
    def score(x, t):
        if float(t) <= clean_until:
            return values_and_action_grads(q_at, x.unsqueeze(1), 1)[1].squeeze(1) / temperature
        return mc_score_target(q_at, x, t.expand(x.shape[0]), temperature, num_samples, sigma_min, sigma_max,
                               form="blend", chunk_size=chunk_size)
    return score


def best_of(act, q, obs, m: int):
    """Not the paper's (--eval-best-of m): m draws of act per state, and the one q(obs, actions) values most (the
    action selection of IDQL and other diffusion policies; a greedier policy than the Boltzmann one it samples)."""
    if m == 1:
        return act(obs)
    obs_m = obs.repeat_interleave(m, 0)  # (B * m, obs_dim)
    actions = act(obs_m)
    best = q(obs_m, actions).reshape(-1, m).argmax(1)
    return actions.reshape(-1, m, actions.shape[-1])[torch.arange(obs.shape[0], device=obs.device), best]


def temperature_at(update: int, args: Args) -> float:
    """Fixed T, or the log-linear anneal log T = log T_init + min(1, update / steps) (log T_final - log T_init)."""
    if args.temperature_final is None:
        return args.temperature
    frac = min(1.0, max(0, update) / args.temperature_anneal_steps)
    return math.exp((1 - frac) * math.log(args.temperature) + frac * math.log(args.temperature_final))


if __name__ == "__main__":
    args = parse_args(Args)
    if args.paper:  # the authors' values become the defaults; flags given explicitly still win
        args = parse_args(Args, defaults=Args(paper=True, **PAPER))
    check_args(args)
    check_env(args.env_id)
    run_dir, writer, device = start_run(args)

    # env setup: one env in a vector env, NEXT_STEP autoreset (Gymnasium 1.x default)
    envs = gym.vector.SyncVectorEnv([make_env(args.env_id, args.seed)], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    low, high = envs.single_action_space.low, envs.single_action_space.high

    score_net = ScoreNetwork(obs_dim, act_dim).to(device)
    policy_net = copy.deepcopy(score_net) if args.score_ema > 0 else score_net  # the weights the policy samples with
    qf1 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr, capturable=args.cudagraphs)
    score_optimizer = torch.optim.Adam(list(score_net.parameters()), lr=args.score_lr, capturable=args.cudagraphs)
    if args.compile:  # in place: the parameters and the checkpoint's keys stay those of the eager modules
        for m in (score_net, qf1, qf2, qf1_target, qf2_target):
            m.compile()
    modules = {"score_net": score_net, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target,
               "q_optimizer": q_optimizer, "score_optimizer": score_optimizer} | ({"policy_net": policy_net} if args.score_ema > 0 else {})
    temperature = torch.tensor(args.temperature, device=device)  # T, a device tensor updated in place when annealed

    def act(obs):
        """A fresh sample of the diffusion policy at these states, squashed into the box: a = tanh(x)."""
        x = sample_actions(policy_net.condition(obs, temperature), (obs.shape[0], act_dim), args.num_diffusion_steps,
                           args.sigma_min, args.sigma_max, device=device)
        return torch.tanh(x)

    def act_critic(obs):
        """Not the paper's (--acting-score critic): the same sampler driven by the critic's own score estimate."""
        score = critic_score(q_energy_at(obs.unsqueeze(1)), temperature, args.acting_mc_samples, args.clean_score_until,
                             args.sigma_min, args.sigma_max, chunk_size=args.mc_chunk_size)
        return torch.tanh(sample_actions(score, (obs.shape[0], act_dim), args.num_diffusion_steps, args.sigma_min,
                                         args.sigma_max, device=device))

    acting = act_critic if args.acting_score == "critic" else act  # acting and evaluation; the backup always calls act

    def act_eval(obs):
        return best_of(acting, lambda o, a: torch.min(qf1(o, a), qf2(o, a)), obs, args.eval_best_of)

    def q_energy_at(obs):
        """Q as the estimator sees it at these states (B, 1, obs_dim): the min of the *online* critics (the
        targets lag by design; the policy should follow the critic being learned now), through their eager
        forward also under --compile (compiled, this input-gradient pass ran slower on the CPU, docs/speed.md)."""
        q1_at, q2_at = qf1.condition(obs), qf2.condition(obs)
        return lambda x: energy_q(lambda a: torch.min(q1_at(a), q2_at(a)), x, temperature, args.exact_bounds)

    def update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations):
        with torch.no_grad():
            next_state_actions = act(b_next_obs)  # a' = tanh(x), x a fresh sample at s'
            qf1_next_target = qf1_target(b_next_obs, next_state_actions)
            qf2_next_target = qf2_target(b_next_obs, next_state_actions)
            # no entropy term: the diffusion policy's density is intractable (as in the authors' code)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target)
            next_q_value = b_rewards + (1 - b_terminations) * args.gamma * min_qf_next_target

        qf1_a_values = qf1(b_obs, b_actions)
        qf2_a_values = qf2(b_obs, b_actions)
        qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
        qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
        qf_loss = qf1_loss + qf2_loss
        q_optimizer.zero_grad()
        qf_loss.backward()
        q_optimizer.step()
        return {"qf1_values": qf1_a_values.mean(), "qf2_values": qf2_a_values.mean(), "qf1_loss": qf1_loss,
                "qf2_loss": qf2_loss, "qf_loss": qf_loss / 2.0}

    def update_score(b_obs, b_actions):
        """The score step, on the critic just updated; with exact bounds the diffusion lives in pre-tanh space."""
        a_0 = torch.atanh(b_actions.clamp(-1 + 1e-6, 1 - 1e-6)) if args.exact_bounds else b_actions
        score_loss = score_matching_loss(score_net, q_energy_at(b_obs.unsqueeze(1)), b_obs, a_0, temperature, args.num_mc_samples, args.sigma_min,
                                         args.sigma_max, form=args.score_target, chunk_size=args.mc_chunk_size)
        score_optimizer.zero_grad()
        score_loss.backward()
        score_optimizer.step()
        if args.score_ema > 0:  # not the paper's: policy_net <- decay policy_net + (1 - decay) score_net
            soft_update(policy_net, score_net, 1 - args.score_ema)
        return {"score_loss": score_loss}

    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    start_step, num_updates = load_checkpoint(args.resume, ALGO, args, modules, device) if args.resume else (0, 0)
    policy = acting  # acting on the env's states (the backup calls act itself)
    if args.cudagraphs:  # captured after --resume has loaded the optimizers' state; the critic-driven sampler
        graphed = [update_critic, update_score] + ([act, act_eval] if args.acting_score == "network" else [])  # branches on t: eager
        update_critic, update_score, *rest = (CudaGraphed(f) for f in graphed)
        policy, act_eval = rest or (policy, act_eval)
    ckpt_path = os.path.join(run_dir, f"{args.exp_name}.pt")
    video_path = os.path.join(run_dir, "videos", "eval-step{}") if args.capture_video else None
    start_time = time.time()
    last_return, eval_returns, last_eval_step, interrupted, diverged = float("nan"), None, -1, False, None
    first_update_step, first_update_time = None, None  # for the SPS of the training phase alone
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a cluster's preemption ends the run like Ctrl-C

    # TRY NOT TO MODIFY: start the game
    obs, _ = envs.reset(seed=args.seed)
    autoreset = np.zeros(envs.num_envs, dtype=bool)
    pbar = tqdm(total=args.total_timesteps, initial=start_step, desc=f"{ALGO} {args.env_id}", mininterval=1.0, dynamic_ncols=True)
    global_step = start_step
    try:
        for global_step in range(start_step, args.total_timesteps):
            # ALGO LOGIC: put action logic here
            if global_step < args.learning_starts:
                actions = np.random.uniform(-1.0, 1.0, (envs.num_envs, act_dim)).astype(np.float32)
            else:
                with torch.no_grad():
                    actions = policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(low + 0.5 * (actions + 1.0) * (high - low))
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    last_return = float(infos["episode"]["r"][i])
                    writer.add_scalar("charts/episodic_return", last_return, global_step)
                    writer.add_scalar("charts/episodic_length", int(infos["episode"]["l"][i]), global_step)

            # NEXT_STEP autoreset: the step after an episode ends ignores the action and only returns the
            # reset observation (reward 0); that pseudo-transition must never enter the buffer.
            # Truncation is not termination: terminations alone cut the bootstrap.
            rb.add(obs, next_obs, actions, rewards, terminations, keep=~autoreset)
            autoreset = np.logical_or(terminations, truncations)
            obs = next_obs

            # ALGO LOGIC: training.
            # `rb.size` rather than the step: a resumed run refills its buffer with policy actions first.
            if rb.size >= max(args.learning_starts, args.batch_size):
                if first_update_step is None:
                    first_update_step, first_update_time = global_step, time.time()
                b_obs, b_actions, b_next_obs, b_rewards, b_terminations = rb.sample(args.batch_size)
                if args.temperature_final is not None:  # annealed: T, read by the update on the device, moves
                    temperature.fill_(temperature_at(num_updates, args))
                losses = {**update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations), **update_score(b_obs, b_actions)}
                num_updates += 1

                # update the target networks
                soft_update(qf1_target, qf1, args.tau)
                soft_update(qf2_target, qf2, args.tau)

                if global_step % 100 == 0:  # the only host syncs of the update path, every 100 steps
                    losses = dict(zip(losses, torch.stack([v.detach().reshape(()) for v in losses.values()]).tolist()))
                    if not all(np.isfinite(v) for v in losses.values()):
                        bad = ", ".join(k for k, v in losses.items() if not np.isfinite(v))
                        diverged = f"non-finite loss at step {global_step} ({bad}; losses are checked every 100 steps)"
                        break
                    for k, v in losses.items():
                        writer.add_scalar(f"losses/{k}", v, global_step)
                    writer.add_scalar("charts/temperature", temperature_at(num_updates, args), global_step)

            if global_step % 100 == 0:
                sps = int((global_step + 1 - start_step) / (time.time() - start_time))
                writer.add_scalar("charts/SPS", sps, global_step)
                pbar.set_postfix(sps=sps, ret=f"{last_return:.1f}", eval=f"{eval_returns.mean():.1f}" if eval_returns is not None else "-", refresh=False)
            pbar.update(1)

            if (global_step + 1) % args.eval_every == 0:
                if not all_finite(modules):
                    diverged = f"non-finite network weights at step {global_step + 1}"
                    break
                eval_returns = evaluate(act_eval, args.env_id, args.eval_episodes, args.seed + 10_000, device,
                                        video_path and video_path.format(global_step + 1))
                last_eval_step = global_step + 1
                writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step + 1)
                if args.save_model:
                    save_checkpoint(ckpt_path, ALGO, global_step + 1, num_updates, args, modules)
        else:
            global_step = args.total_timesteps
    except KeyboardInterrupt:
        interrupted = True
    pbar.close()
    loop_end_time = time.time()

    # the end of a run: a final evaluation, checkpoint and summary (also after Ctrl-C or SIGTERM, never after NaN)
    if diverged is None:
        if last_eval_step != global_step:
            eval_returns = evaluate(act_eval, args.env_id, args.eval_episodes, args.seed + 10_000, device,
                                    video_path and video_path.format(global_step))
            writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step)
        if args.save_model and save_checkpoint(ckpt_path, ALGO, global_step, num_updates, args, modules):
            print(f"model saved to {ckpt_path}")
    wall_time = time.time() - start_time
    update_sps = (global_step - first_update_step) / (loop_end_time - first_update_time) if first_update_step is not None else None
    summary = {"algo": ALGO, "env_id": args.env_id, "seed": args.seed, "global_step": global_step, "num_updates": num_updates,
               "eval_return_mean": float(eval_returns.mean()) if eval_returns is not None else None,
               "eval_return_std": float(eval_returns.std()) if eval_returns is not None else None,
               "sps": (global_step - start_step) / wall_time, "update_sps": update_sps, "wall_time_s": wall_time,
               "stopped": diverged or (f"interrupted at step {global_step}" if interrupted else None), "args": asdict(args)}
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{ALGO} {args.env_id} step {global_step}: eval return {summary['eval_return_mean']} +- {summary['eval_return_std']} ({run_dir})")
    envs.close()
    writer.close()
    if diverged:
        fail(f"{diverged}; the last good checkpoint is kept" if args.save_model else diverged)
