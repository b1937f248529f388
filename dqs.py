"""Diffusion Q-Sampling (DQS): the policy is a diffusion model that samples pi(a|s) ~ exp(Q(s,a) / T).

    python dqs.py --env-id Humanoid-v4
    python dqs.py --env-id InvertedPendulum-v4 --num-mc-samples 16 --num-diffusion-steps 20 --no-cuda
    python dqs.py --paper --env-id Humanoid-v4      # the authors' configuration, none of our departures

Jain, Akhound-Sadegh, Ravanbakhsh, "Sampling from Energy-based Policies using Diffusion" (arXiv
2410.01312, RLC 2025). The score network is trained on the iDEM Monte-Carlo score target
(Akhound-Sadegh et al., arXiv 2402.06121) of the Boltzmann policy of the twin critics, and actions
are drawn by Euler-Maruyama on the reverse variance-exploding SDE. The file follows the paper: the
noise schedule, the score network, the score target S_K, the score loss, the sampler, the critic;
then, in one section, what is not in the paper; then the skeleton shared with sac_baseline.py and
the training loop. `diff sac_baseline.py dqs.py` shows what DQS changes. Policies act in the
normalised box [-1, 1]^d; the env's bounds are applied only when stepping the env.
"""
import copy
import dataclasses
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

# --- shared: headless ---
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):  # headless: render offscreen for --capture-video
    os.environ.setdefault("MUJOCO_GL", "egl")  # (set before MuJoCo and dm_control load)
# --- end shared: headless ---

ALGO = "dqs"


@dataclass
class Args:
    # --- shared: experiment flags ---
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be used when available"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "dqs"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to capture videos of the evaluation episodes (`runs/{run_name}/videos`)"""
    save_model: bool = False
    """whether to checkpoint at every evaluation and at the end (`runs/{run_name}/{exp_name}.pt`, its replay buffer, the best weights)"""
    resume: str | None = None
    """path of a checkpoint written by --save-model to continue from (with its replay buffer and random states)"""
    eval_every: int = 50_000
    """evaluate the policy every this many env steps (and always at the end)"""
    eval_episodes: int = 10
    """number of episodes per evaluation, on a separate env with its own seed"""
    # --- end shared: experiment flags ---

    # DQS as in the paper, with the authors' code defaults where the help does not say ours
    # --- shared: algorithm flags ---
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
    # --- end shared: algorithm flags ---
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

    # Not in the paper: on by default where docs/results.md measured them to learn; --paper turns them all off
    paper: bool = False
    """the authors' configuration: their K, N, target and sampler, none of the departures below (explicit flags still win)"""
    temperature_scale: float | None = None
    """if set (not the paper's; e.g. 0.09, the std of a Gaussian with SAC's target entropy), T follows the critic instead of
    --temperature: T = this x the RMS action-gradient of min(Q1, Q2) at the backup's a', tracked every update, so that
    exp(Q/T) spreads about this much per action dimension whatever the reward's scale"""
    backup_score: Literal["network", "critic"] = "network"
    """the sampler that draws the backup's a': 'network' (s_theta, the paper's) or 'critic' (not the paper's: the sampler
    that acts, with K = --backup-mc-samples)"""
    backup_mc_samples: int = 8
    """K of the critic-driven sampler's estimate when it draws the backup's a' (--backup-score critic)"""
    acting_score: Literal["network", "critic"] = "critic"
    """not the paper's: the score that drives the sampler that acts and evaluates: 'network' (s_theta, the paper's) or
    'critic' (grad Q / T for t <= --clean-score-until, the --acting-estimate above; docs/results.md#the-acting-policy-against-the-exact-one-offline)"""
    acting_mc_samples: int = 64
    """K of the critic-driven acting sampler's estimate (not the paper's)"""
    clean_score_until: float = 0.6
    """the critic-driven sampler uses one critic gradient, the clean score, for t up to this (not the paper's)"""
    acting_estimate: Literal["grad", "blend", "cv", "refit"] = "refit"
    """the critic-driven sampler's estimate above --clean-score-until (not the paper's): 'refit', importance sampling with a
    proposal refitted to its first half's weights, or a --score-target form"""
    exact_bounds: bool = True
    """not the paper's: Q at tanh(x) plus the tanh log-Jacobian, so that tanh(x) is exactly Boltzmann on the box"""
    score_target: Literal["grad", "blend", "cv"] = "blend"
    """'grad': the paper's S_K; 'blend' (not the paper's): mixed with the same samples' noise form where the weights concentrate;
    'cv' (not the paper's): Reverse Flow Matching's control variate of the same two forms"""
    score_ema: float = 0.995
    """not the paper's (0): the network samples with an exponential moving average of its weights, this decay per update"""
    eval_best_of: int = 1
    """if > 1 (not the paper's), evaluation acts with the one of this many policy samples that min(Q1, Q2) values most"""
    eval_beside_best_of: int = 0
    """if > 1, every evaluation also runs the best of this many draws by min(Q1, Q2) (eval/best_of_M_return), beside the headline"""

    # Speed: the same algorithm, faster (off by default)
    # --- shared: speed flags ---
    compile: bool = False
    """torch.compile the networks (forward and backward passes; optimizers stay eager)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision; 'high' is TF32 on GPUs, 'medium' bf16 products on CPUs"""
    cudagraphs: bool = False
    """replay the acting sampler and the updates as CUDA graphs (CUDA only)"""
    # --- end shared: speed flags ---
    mc_chunk_size: int | None = None
    """perturbed actions per chunk of the score target (default: 2048 // batch on CPU, all K on CUDA)"""


def check_args(args: Args):
    check_common_args(args, ["temperature", "temperature_anneal_steps", "num_mc_samples", "num_diffusion_steps", "sigma_min",
                             "eval_best_of", "acting_mc_samples", "backup_mc_samples"],
                      optional=["temperature_final", "mc_chunk_size", "temperature_scale"])
    if args.temperature_final is not None and args.temperature_scale is not None:
        fail("--temperature-final anneals a fixed T and --temperature-scale makes T follow the critic: give one")
    if not 0 <= args.clean_score_until <= 1:
        fail(f"--clean-score-until must be in [0, 1], got {args.clean_score_until}")
    if args.sigma_max <= args.sigma_min:
        fail(f"--sigma-max ({args.sigma_max}) must be larger than --sigma-min ({args.sigma_min})")
    if not 0 <= args.score_ema < 1:
        fail(f"--score-ema must be in [0, 1), got {args.score_ema}")


# ---------------------------------------------------------------------------------------------
# Noise schedule (DQS, arXiv 2410.01312, the method section; the VE SDE of iDEM, arXiv 2402.06121):
# a variance-exploding SDE with a geometric schedule, t in [0, 1].
#   x_t = x_0 + sqrt(h(t)) eps,   h(t) = sigma_min^2 (r^(2t) - 1),   r = sigma_max / sigma_min
#   g(t)^2 = dh/dt = 2 ln(r) sigma_min^2 r^(2t)
@dataclass(frozen=True)
class Schedule:
    sigma_min: float = 1e-5
    sigma_max: float = 1.0

    def h(self, t):
        """h(t), the variance added to a clean x_0 by time t (expm1 keeps it accurate near t = 0)."""
        log_r = math.log(self.sigma_max / self.sigma_min)
        return self.sigma_min**2 * torch.expm1(2 * log_r * t)

    def g2(self, t):
        """g(t)^2 = dh/dt, the squared diffusion coefficient of the forward SDE."""
        log_r = math.log(self.sigma_max / self.sigma_min)
        return 2 * log_r * self.sigma_min**2 * torch.exp(2 * log_r * t)


# ---------------------------------------------------------------------------------------------
# Score network s_theta(s, x_t, t, T) (DQS, the method section; the architecture of the authors' code):
# the temperature is an input so that T can be annealed.
def orthogonal_init(module: nn.Module):
    """The authors' initialisation of every Linear layer, output layers too: orthogonal, gain sqrt(2), zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, math.sqrt(2))
            nn.init.zeros_(m.bias)


def sinusoidal_embedding(x, dim: int = 128, max_period: float = 1000.0):
    """emb(x) = [sin(x f_k), cos(x f_k)], f_k = max_period^(-k / (dim/2 - 1)), k = 0 .. dim/2 - 1.

    As in the authors' code, x is t in [0, 1] (or T) itself, with no scale factor: the angles run from
    x / 1000 to x radians, a smooth code of t. (DDPM's code of 1000 integer steps would put up to 1000 t
    into the angles and swamp the state and action inputs of the first layer.)"""
    f = torch.exp(-math.log(max_period) * torch.arange(dim // 2, device=x.device, dtype=x.dtype) / (dim // 2 - 1))
    angle = x.unsqueeze(-1) * f
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class ScoreNetwork(nn.Module):
    """s_theta(s, x_t, t, T): concat[s, x_t, emb(t), emb(T)] -> Linear 256, GELU, two residual blocks
    h + GELU(Linear(h)), Linear to the action dimension."""

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
        and emb(t) once per step for the whole batch (docs/speed.md)."""
        w_s, w_x, w_t, w_temp = self.fc_in.weight.split([self.obs_dim, self.act_dim, self.emb_dim, self.emb_dim], dim=1)
        temperature = torch.as_tensor(temperature, dtype=obs.dtype, device=obs.device)
        fixed = F.linear(obs, w_s) + F.linear(sinusoidal_embedding(temperature, self.emb_dim), w_temp, self.fc_in.bias)
        return lambda x, t: self.body(fixed + F.linear(x, w_x) + F.linear(sinusoidal_embedding(t, self.emb_dim), w_t))


# ---------------------------------------------------------------------------------------------
# Monte-Carlo score target S_K (iDEM, arXiv 2402.06121, its section 3; DQS puts Q/T in iDEM's -energy).
# The noised Boltzmann policy is
#   p_t(x_t) = E_z[ exp(Q(s, x_t + sqrt(h(t)) z) / T) ] / Z,  z ~ N(0, I),
# so with K samples z_i its score is estimated by
#   S_K(x_t) = grad_{x_t} [ logsumexp_i Q(s, x_t + sqrt(h(t)) z_i) / T - log K ]
#            = sum_i softmax_i(Q_i / T) grad_x Q_i / T,
# a self-normalised importance-weighted mean of the critic's action-gradients.
def mc_score_target(q_of_actions, x_t, t, temperature, num_mc_samples: int, schedule: Schedule = Schedule(), *,
                    form: str = "grad", chunk_size: int | None = None):
    """S_K for noisy x_t (B, act_dim) at times t (B,), for any differentiable critic at the batch's states
    q_of_actions(actions (B, n, act_dim)) -> Q (B, n), e.g. SoftQNetwork.condition(obs (B, 1, obs_dim)). A
    constant target: only action-gradients are taken. form="blend" is our lower-variance variant (Not in the paper)."""
    batch, act_dim = x_t.shape
    if chunk_size is None:
        chunk_size = max(1, CPU_CHUNK_ROWS // batch) if x_t.device.type == "cpu" else num_mc_samples
    temperature = torch.as_tensor(temperature, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1)  # (1, 1) or (B, 1)
    sqrt_h = schedule.h(t).sqrt().reshape(batch, 1, 1)
    z = torch.randn(batch, num_mc_samples, act_dim, device=x_t.device, dtype=x_t.dtype)
    x_i = x_t.detach().unsqueeze(1) + sqrt_h * z  # the K perturbed actions, (B, K, act_dim)
    q, grad_q = values_and_action_grads(q_of_actions, x_i, chunk_size)  # (B, K), (B, K, act_dim)
    w = torch.softmax(q / temperature, dim=1)  # softmax_i(Q_i / T)
    s_k = (w.unsqueeze(-1) * grad_q).sum(1) / temperature
    if form == "blend":
        return blend_with_noise_form(s_k, w, z, sqrt_h.reshape(batch, 1))
    if form == "cv":
        return control_variate_with_noise_form(grad_q / temperature.unsqueeze(-1), w, z, sqrt_h)
    return s_k


# On the CPU the B x K perturbed actions are evaluated in chunks of about CPU_CHUNK_ROWS: the critics'
# activations then stay in cache instead of streaming B x K x 256 floats through memory (docs/speed.md).
# The z draws are made before chunking, so the result does not depend on it.
CPU_CHUNK_ROWS = 2048


def values_and_action_grads(q_of_actions, actions, chunk_size: int):
    """Q and grad_a Q at actions (B, K, act_dim), chunk_size samples at a time: by q_of_actions.value_and_grad where it
    has one (the critics' backward written out, twin_log_target), else by autograd. Results are written into
    buffers allocated up front: per-chunk lists fragmented the CPU heap (docs/speed.md)."""
    q, grad_q = actions.new_empty(actions.shape[:2]), torch.empty_like(actions)
    by_hand = getattr(q_of_actions, "value_and_grad", None)
    for start in range(0, actions.shape[1], chunk_size):
        chunk = slice(start, start + chunk_size)
        if by_hand is not None:
            with torch.no_grad():
                q[:, chunk], grad_q[:, chunk] = by_hand(actions[:, chunk])
            continue
        a = actions[:, chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            q_chunk = q_of_actions(a)
            grad_q[:, chunk] = torch.autograd.grad(q_chunk.sum(), a)[0]
        q[:, chunk] = q_chunk.detach()
    return q, grad_q


# ---------------------------------------------------------------------------------------------
# Score loss (DQS, the method section): denoising score matching of noised replay actions against S_K.
def score_matching_loss(score_net, q_of_actions, obs, x_0, temperature, num_mc_samples: int, schedule: Schedule = Schedule(), *,
                        form: str = "grad", chunk_size: int | None = None):
    """For replay states obs and actions x_0, with q_of_actions the critic at those states (see mc_score_target),
    t ~ U(0, 1) per row, x_t = x_0 + sqrt(h(t)) eps, lambda(t) = h(t) + 1e-3:
        loss = mean_b lambda(t) mean_d (s_theta(s, x_t, t, T) - S_K(x_t))^2."""
    t = torch.rand(x_0.shape[0], device=x_0.device, dtype=x_0.dtype)
    h_t = schedule.h(t)
    x_t = x_0 + h_t.sqrt().unsqueeze(-1) * torch.randn_like(x_0)
    target = mc_score_target(q_of_actions, x_t, t, temperature, num_mc_samples, schedule, form=form, chunk_size=chunk_size)
    lambda_t = h_t + 1e-3
    return (lambda_t * (score_net(obs, x_t, t, temperature) - target).pow(2).mean(-1)).mean()


# ---------------------------------------------------------------------------------------------
# Sampler (DQS, the method section): Euler-Maruyama on the reverse SDE, dx = -g(t)^2 score dt + g(t) dw
# run backwards in time.
@torch.no_grad()
def sample_actions(score_fn, shape, num_diffusion_steps: int, schedule: Schedule = Schedule(), *, device=None,
                   dtype=torch.float32):
    """x_1 ~ N(0, h(1) I), then for t = 1, 1 - 1/N, ..., 1/N with dt = 1/N:
        x <- x + g(t)^2 score(x, t) dt + g(t) sqrt(dt) z,   z ~ N(0, I)
    (no final noise-free step, as in the authors' code). score_fn(x, t) is any score function of x
    (shape `shape`) and a 0-dim t, e.g. ScoreNetwork.condition(obs, T). Returns the pre-tanh samples x;
    the executed action is tanh(x)."""
    dt = 1.0 / num_diffusion_steps
    h_1 = schedule.h(torch.tensor(1.0, dtype=torch.float64)).item()
    x = math.sqrt(h_1) * torch.randn(shape, device=device, dtype=dtype)
    t_grid = torch.arange(num_diffusion_steps, 0, -1, device=device, dtype=dtype) * dt  # t = 1, 1 - 1/N, ..., 1/N, made once
    for t, g2 in zip(t_grid, schedule.g2(t_grid)):  # 0-dim views: no copy per step
        x = x + g2 * score_fn(x, t) * dt + (g2 * dt).sqrt() * torch.randn_like(x)
    return x


# ---------------------------------------------------------------------------------------------
# Critic (DQS, the method section; the authors' init): Q(s, a), two hidden layers of 256. The backup
# uses fresh diffusion samples at s' and no entropy term (the loop's update_critic).
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
        W [s; a] + b = (W_s s + b) + W_a a, and the bracket is computed once for all the K actions (docs/speed.md)."""
        w_s, w_a = self.fc1.weight.split([self.obs_dim, self.fc1.in_features - self.obs_dim], dim=1)
        fixed = F.linear(obs, w_s, self.fc1.bias)
        return lambda actions: self.fc3(F.relu(self.fc2(F.relu(fixed + F.linear(actions, w_a))))).squeeze(-1)

    def condition_with_grad(self, obs):
        """As condition, a function of actions returning Q and dQ/da together, the backward pass written out by hand
        (no autograd graph; the estimator's hot path, docs/speed.md):
            u1 = W_s s + b1 + W_a a,  u2 = W2 relu(u1) + b2,  Q = w3 relu(u2) + b3
            dQ/da = W_a^T (1[u1 > 0] * W2^T (1[u2 > 0] * w3))"""
        w_s, w_a = self.fc1.weight.split([self.obs_dim, self.fc1.in_features - self.obs_dim], dim=1)
        fixed = F.linear(obs, w_s, self.fc1.bias)

        relu_backward = torch.ops.aten.threshold_backward  # (gradient, relu's output, 0): the gradient where the unit is on

        def value_and_grad(actions):
            h1 = F.relu(fixed + F.linear(actions, w_a))
            h2 = F.relu(self.fc2(h1))
            q = self.fc3(h2).squeeze(-1)
            dq_du2 = relu_backward(self.fc3.weight[0].expand_as(h2), h2, 0)  # w3 * 1[u2 > 0]
            dq_du1 = relu_backward(dq_du2 @ self.fc2.weight, h1, 0)  # (W2^T dq_du2) * 1[u1 > 0]
            return q, dq_du1 @ w_a
        return value_and_grad


def temperature_at(update: int, args: Args) -> float:
    """Fixed T, or the log-linear anneal log T = log T_init + min(1, update / steps) (log T_final - log T_init)."""
    if getattr(args, "temperature_scale", None) is not None:
        raise ValueError("T follows the critic (--temperature-scale): read it from the run's checkpoint or summary")
    if args.temperature_final is None:
        return args.temperature
    frac = min(1.0, max(0, update) / args.temperature_anneal_steps)
    return math.exp((1 - frac) * math.log(args.temperature) + frac * math.log(args.temperature_final))


# =============================================================================================
# Not in the paper: our departures, each behind its flag (`--paper` turns them all off), each measured
# in docs/results.md.
# =============================================================================================
# What --paper restores: the authors' code defaults for everything in Args that is ours.
PAPER = dict(temperature=0.05, temperature_scale=None, num_mc_samples=1000, num_diffusion_steps=500, acting_score="network",
             exact_bounds=False, score_target="grad", score_ema=0.0, eval_best_of=1, backup_score="network")


def parse_args() -> Args:
    """The flags; with --paper, PAPER's values become the defaults and flags given explicitly still win."""
    args = tyro.cli(Args)
    if args.paper:
        args = tyro.cli(Args, default=dataclasses.replace(Args(), paper=True, **PAPER))
    return args


def blend_with_noise_form(s_k, w, z, sqrt_h):
    """--score-target blend. The same samples give a second estimate of the same score by differentiating
    the Gaussian kernel instead of Q: E_w[x_i - x_t] / h(t) = E_w[z] / sqrt(h) (the noise form).
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


def control_variate_with_noise_form(g, w, z, sqrt_h):
    """--score-target cv: the minimum-variance combination of the same two estimates, as Reverse Flow Matching
    (Li, Tang, Azizan, arXiv 2601.08136) writes it. With u_i = z_i / sqrt(h) and g_i = grad Q_i / T (B, K, d),
        (1 - l) E_w[u] + l E_w[g],   l_d = Cov_v(u_d, u_d - g_d) / (Var_v(u_d - g_d) + 1e-4), clipped to [-2, 2],
    moments under v_i = w_i^2 / sum_j w_j^2, per state and action dimension: u - g has mean zero under the exact
    posterior, so l scales the control variate by its plug-in optimum."""
    u = z / sqrt_h.clamp_min(1e-30)  # (B, K, d); sqrt_h (B, 1, 1)
    v = (w.pow(2) / w.pow(2).sum(1, keepdim=True)).unsqueeze(-1)
    diff = u - g
    diff_mean, u_mean = (v * diff).sum(1, keepdim=True), (v * u).sum(1, keepdim=True)
    cov = (v * (u - u_mean) * (diff - diff_mean)).sum(1)
    l = (cov / ((v * (diff - diff_mean).pow(2)).sum(1) + 1e-4)).clamp(-2.0, 2.0)
    w = w.unsqueeze(-1)
    estimate = (1 - l) * (w * u).sum(1) + l * (w * g).sum(1)
    return torch.where(sqrt_h.reshape(-1, 1) > 0, estimate, (w * g).sum(1))  # t = 0: no noise form, S_K


def log_target_times_T(q_of_actions, x, temperature, exact_bounds: bool = False):
    """T log p(x) + const for the density p of the pre-tanh x that the sampler targets (Q/T is the log-density).
    The paper queries Q at the unsquashed x, also outside [-1, 1], so tanh(x) is only roughly Boltzmann. With
    --exact-bounds a = tanh(x) ~ exp(Q(s, a) / T) on the box: T log p(x) = Q(s, tanh x) + T sum_d log(1 - tanh(x_d)^2)."""
    if not exact_bounds:
        return q_of_actions(x)
    return q_of_actions(torch.tanh(x)) + temperature * log_det_tanh_jacobian(x)


def twin_log_target(qf1, qf2, obs, temperature, exact_bounds: bool = False):
    """T log p(x) + const at states obs (B, 1, obs_dim) as a function of x (B, n, act_dim), the target that S_K, the
    critic-driven sampler and the temperature rule differentiate: min(Q1, Q2) of the *online* critics (the targets lag
    by design; the policy should follow the critic being learned now), as log_target_times_T. Its attribute
    value_and_grad(x) gives the same values and their x-gradient from the critics' hand-written backward:
        grad_x = dQmin/da                                  (the paper's: a = x)
        grad_x = (1 - tanh(x)^2) dQmin/da - 2 T tanh(x)    (--exact-bounds: a = tanh(x), plus T log(1 - tanh(x)^2))"""
    q1_at, q2_at = qf1.condition(obs), qf2.condition(obs)
    q1_grad_at, q2_grad_at = qf1.condition_with_grad(obs), qf2.condition_with_grad(obs)

    def log_target(x):
        return log_target_times_T(lambda a: torch.min(q1_at(a), q2_at(a)), x, temperature, exact_bounds)

    def value_and_grad(x):
        a = torch.tanh(x) if exact_bounds else x
        (q1, grad1), (q2, grad2) = q1_grad_at(a), q2_grad_at(a)
        q, grad = torch.min(q1, q2), torch.where((q1 <= q2).unsqueeze(-1), grad1, grad2)
        if exact_bounds:
            q, grad = q + temperature * log_det_tanh_jacobian(x), (1 - a.pow(2)) * grad - 2 * temperature * a
        return q, grad

    log_target.value_and_grad = value_and_grad
    return log_target


def log_det_tanh_jacobian(x):
    """sum_d log(1 - tanh(x_d)^2), written stably as 2 (log 2 - x - softplus(-2x))."""
    return (2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))).sum(-1)


# --acting-score critic: the sampler driven by the critic itself. Offline, a score network trained on the
# exact noised score still samples too wide, because it cannot fit the score where h(t) is comparable to the
# policy's variance (t > 0.75 at the default schedule) and that is where the sampler sets the spread; the
# Monte-Carlo estimate of the same score from the critic is accurate there (docs/diagnosis.md). Below
# that, one critic gradient is the noised score to O(h): p_t = p * N(0, h) -> p as h -> 0.
def critic_score(q_of_actions, temperature, num_mc_samples: int, clean_until: float, schedule: Schedule = Schedule(), *,
                 form: str = "blend", chunk_size: int | None = None):
    """score(x, t) for sample_actions from the critic at fixed states, q_of_actions as for mc_score_target, no network:
        t <= clean_until:  grad_x Q(s, x) / T                      (the clean score, one critic gradient)
        t >  clean_until:  the estimate with K = num_mc_samples: refit_score (form="refit"), else mc_score_target(form=form)
    One branch per sampler step, read from t on the host (one sync per step on a GPU)."""
    def score(x, t):
        if float(t) <= clean_until:
            return values_and_action_grads(q_of_actions, x.unsqueeze(1), 1)[1].squeeze(1) / temperature
        if form == "refit":
            return refit_score(q_of_actions, x, t.expand(x.shape[0]), temperature, num_mc_samples, schedule)
        return mc_score_target(q_of_actions, x, t.expand(x.shape[0]), temperature, num_mc_samples, schedule, form=form,
                               chunk_size=chunk_size)
    return score


def critic_policy(qf1, qf2, obs, temperature, args, schedule: Schedule = Schedule(), num_mc_samples: int | None = None):
    """--acting-score critic, the policy that acts: a = tanh(x) at states obs (B, obs_dim), x drawn by sample_actions driven by
    critic_score of the twin critics' log target, with the run's --acting-mc-samples (or num_mc_samples), --clean-score-until,
    --acting-estimate, --exact-bounds, --num-diffusion-steps and --mc-chunk-size (args: a dqs.py Args or its saved dict)."""
    log_target = twin_log_target(qf1, qf2, obs.unsqueeze(1), temperature, args.exact_bounds)
    score = critic_score(log_target, temperature, num_mc_samples or args.acting_mc_samples, args.clean_score_until, schedule,
                         form=args.acting_estimate, chunk_size=args.mc_chunk_size)
    act_dim = qf1.fc1.in_features - qf1.obs_dim
    return torch.tanh(sample_actions(score, (obs.shape[0], act_dim), args.num_diffusion_steps, schedule, device=obs.device))


# --acting-estimate refit: where the policy is far narrower than the noise (a sharp critic, large t), the K perturbed
# actions of S_K and the blend fall mostly where exp(Q/T) is negligible, a few carry all the weight, and the sampled
# policy comes out several times too wide (docs/results.md, InvertedDoublePendulum). Importance sampling with a second
# proposal fitted to the first half's weights puts the second half where the posterior is.
@torch.no_grad()
def refit_score(q_of_actions, x_t, t, temperature, num_mc_samples: int, schedule: Schedule = Schedule()):
    """The noised score at x_t (B, act_dim), times t (B,), by Tweedie's formula grad log p_t(x_t) = (E[x_0 | x_t] - x_t) / h,
    the posterior p(x_0 | x_t) ∝ exp(Q(x_0) / T) N(x_0; x_t, h) averaged by importance sampling in two halves of the K samples:
        1. x_i = x_t + sqrt(h) z_i, weights softmax_i(Q_i / T): the posterior's mean m and variance v per action dimension;
        2. x_j ~ N(m, s^2), s^2 = min(h, v + h / 2), weights softmax_j(Q_j / T - |x_j - x_t|^2 / 2h + |(x_j - m) / s|^2 / 2)
           (posterior over proposal), and E[x_0 | x_t] = sum_j w_j x_j.
    Forward passes only. Its error is noisier than the blend's where the policy is wide against the noise, but the drift
    it moves x by, g^2 dt (E[x_0 | x_t] - x_t) / h, errs by about sqrt(h / ESS), small against the step's own noise."""
    batch, act_dim = x_t.shape
    temperature = torch.as_tensor(temperature, dtype=x_t.dtype, device=x_t.device).reshape(-1, 1)
    h = schedule.h(t).reshape(batch, 1)
    first = max(1, num_mc_samples // 2)
    x_i = x_t.unsqueeze(1) + h.sqrt().unsqueeze(-1) * torch.randn(batch, first, act_dim, device=x_t.device, dtype=x_t.dtype)
    w = torch.softmax(q_of_actions(x_i) / temperature, dim=1).unsqueeze(-1)
    mean = (w * x_i).sum(1, keepdim=True)
    var = ((w * (x_i - mean).pow(2)).sum(1, keepdim=True) + h.unsqueeze(-1) / 2).clamp_max(h.unsqueeze(-1))
    x_j = mean + var.sqrt() * torch.randn(batch, max(1, num_mc_samples - first), act_dim, device=x_t.device, dtype=x_t.dtype)
    log_w = (q_of_actions(x_j) / temperature - (x_j - x_t.unsqueeze(1)).pow(2).sum(-1) / (2 * h)
             + ((x_j - mean).pow(2) / (2 * var)).sum(-1))
    posterior_mean = (torch.softmax(log_w, dim=1).unsqueeze(-1) * x_j).sum(1)
    return (posterior_mean - x_t) / h


# --temperature-scale: T in the units of the critic. A fixed T is in reward units, and a critic whose values spread
# 0.01 over the actions (a sparse task before its first reward) makes exp(Q/T) at T = 0.05 uniform, one that spreads 100
# (HalfCheetah's returns) a point (docs/results.md). SAC tunes its alpha to a target entropy; here T tracks a target width.
# For a quadratic critic Q = -|a - mu|^2 / 2c, exp(Q/T) is N(mu, cT) and its actions have dQ/da_d = -(a_d - mu_d) / c, so
# E[(dQ/da_d)^2] = T / c and the rule's fixed point T = scale^2 / c gives the policy std `scale`; for a critic that rises
# linearly towards a bound with slope q, T = scale q gives exp(q a / T) a decay length `scale` from the bound. Q -> 100 Q
# gives T -> 100 T and the same policy.
def temperature_from_critic(action_grads, scale: float):
    """scale * RMS of the critic's action-gradients dQ/da_d (..., act_dim) over the policy's actions and action dimensions."""
    return scale * action_grads.pow(2).mean().sqrt()


@torch.no_grad()
def track_temperature(temperature, target, rate: float = 0.01):
    """log T <- log T + rate (log target - log T), in place on the device (rate = 1 sets T = target)."""
    temperature.mul_((target / temperature).pow(rate))


def best_of(act, q, obs, m: int):
    """--eval-best-of m: m draws of act per state, and the one q(obs, actions) values most (the action selection
    of IDQL and other diffusion policies; a greedier policy than the Boltzmann one it samples)."""
    if m == 1:
        return act(obs)
    obs_m = obs.repeat_interleave(m, 0)  # (B * m, obs_dim)
    actions = act(obs_m)
    best = q(obs_m, actions).reshape(-1, m).argmax(1)
    return actions.reshape(-1, m, actions.shape[-1])[torch.arange(obs.shape[0], device=obs.device), best]


# ---------------------------------------------------------------------------------------------
# The reinforcement-learning skeleton, written out line for line in dqs.py and sac_baseline.py (as
# CleanRL and LeanRL do) so that each script runs alone; test_dqs.py fails when the two copies differ.
# --- shared: errors ---
def fail(message: str):
    """Bad input ends the run with one line naming the problem and a non-zero exit, not a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_common_args(args, positive: list[str] = (), optional: list[str] = ()):
    """The bounds every run shares, and a script's own flags that must be positive (optional ones when set)."""
    positive = ["total_timesteps", "buffer_size", "batch_size", "eval_every", "eval_episodes", *positive]
    for name in positive + [n for n in optional if getattr(args, n) is not None]:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.learning_starts < 0:
        fail(f"--learning-starts must be non-negative, got {args.learning_starts}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) is larger than --buffer-size ({args.buffer_size})")
# --- end shared: errors ---


# --- shared: env ---
def gym_make(env_id: str, **kwargs):
    """gym.make for MuJoCo, DeepMind Control and `module:id` ids (e.g. benchmark.paper_envs:GMMNavigation-v0,
    gymnasium_robotics:PointMaze_UMaze-v3: Gymnasium imports the module, which registers the env), with flat
    observations (DMC's and PointMaze's come as a dict)."""
    if env_id.startswith("dm_control/"):
        try:
            import shimmy
        except ImportError:
            fail(f"{env_id} needs DeepMind Control: pip install 'shimmy[dm-control]'")
        gym.register_envs(shimmy)
    env = gym.make(env_id, **kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = gym.wrappers.FlattenObservation(env)
    return env


def make_env(env_id: str, seed: int):
    def thunk():
        env = gym.wrappers.RecordEpisodeStatistics(gym_make(env_id))
        env.action_space.seed(seed)
        return env

    return thunk


def check_env(env_id: str):
    """Unknown ids and discrete action spaces are caught before anything is built."""
    try:
        env = gym_make(env_id)
    except (gym.error.Error, ModuleNotFoundError) as e:  # an unknown id, or the module of a module:id
        fail(f"cannot make env {env_id!r}: {e}")
    if not isinstance(env.action_space, gym.spaces.Box):
        fail(f"{env_id} has a {type(env.action_space).__name__} action space; only continuous (Box) actions are supported")
    env.close()
# --- end shared: env ---


# --- shared: replay buffer ---
# Preallocated tensors on the training device, so sampling a batch never leaves it. Its filled part
# travels with the checkpoint (state_dict), so that a resumed run goes on learning from the same data.
class ReplayBuffer:
    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations")

    def __init__(self, size: int, obs_dim: int, act_dim: int, device: torch.device):
        self.obs = torch.zeros((size, obs_dim), device=device)
        self.next_obs = torch.zeros((size, obs_dim), device=device)
        self.actions = torch.zeros((size, act_dim), device=device)
        self.rewards = torch.zeros(size, device=device)
        self.terminations = torch.zeros(size, device=device)
        self.max_size, self.ptr, self.size, self.device = size, 0, 0, device

    def add(self, obs, next_obs, actions, rewards, terminations, keep):
        """Adds one vector-env step (arrays with a leading num_envs axis), only the rows where `keep`."""
        for i in np.flatnonzero(keep):
            j = self.ptr
            self.obs[j] = torch.as_tensor(obs[i], device=self.device)
            self.next_obs[j] = torch.as_tensor(next_obs[i], device=self.device)
            self.actions[j] = torch.as_tensor(actions[i], device=self.device)
            self.rewards[j] = float(rewards[i])
            self.terminations[j] = float(terminations[i])
            self.ptr = (self.ptr + 1) % self.max_size
            self.size = min(self.size + 1, self.max_size)

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return self.obs[idx], self.actions[idx], self.next_obs[idx], self.rewards[idx], self.terminations[idx]

    def state_dict(self) -> dict:
        """The filled rows (on the CPU) and the write position."""
        return {"ptr": self.ptr, "size": self.size} | {k: getattr(self, k)[: self.size].cpu() for k in self.FIELDS}

    def load_state_dict(self, state: dict):
        if state["size"] > self.max_size:
            fail(f"the saved replay buffer holds {state['size']} transitions, more than --buffer-size {self.max_size}")
        for k in self.FIELDS:
            getattr(self, k)[: state["size"]] = state[k].to(self.device)
        self.ptr, self.size = state["ptr"] % self.max_size, state["size"]
# --- end shared: replay buffer ---


# --- shared: run ---
def start_run(args):
    """Seeds, the device and the run's folder `runs/{env}__{exp_name}__{seed}__{time}` with its TensorBoard
    writer (a resumed run keeps writing into the folder of its checkpoint); wandb with --track."""
    run_name = f"{args.env_id.replace('/', '_').replace(':', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"  # ':' of module:id: not in Windows paths
    run_dir = os.path.dirname(os.path.abspath(args.resume)) if args.resume else os.path.join("runs", run_name)
    if args.track:
        try:
            import wandb
        except ImportError:
            fail("--track needs Weights and Biases: pip install wandb")
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=os.path.basename(run_dir), save_code=True)
    os.makedirs(run_dir, exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{k}|{v}|" for k, v in vars(args).items()])))

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if args.cudagraphs and device.type != "cuda":
        fail("--cudagraphs needs a CUDA device (none is available here, or --no-cuda was given)")
    return run_dir, writer, device


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float):
    """target <- tau source + (1 - tau) target, weight by weight: the target critics after each update, and
    dqs.py's --score-ema average of the score network (tau = 1 - decay)."""
    for p_target, p in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p, tau)
# --- end shared: run ---


# --- shared: evaluation ---
# On its own env and seed, with the script's evaluation policy act_fn(obs (1, obs_dim)) -> actions in [-1, 1].
def evaluate(act_fn, env_id: str, episodes: int, seed: int, device: torch.device, video: str | None = None,
             successes: list | None = None) -> np.ndarray:
    """The returns of `episodes` episodes; with `video` (a path prefix), the first one is recorded as an mp4. Where the
    env reports success in its info (PointMaze's "success"), whether each episode ever succeeded is appended to `successes`."""
    env = gym_make(env_id, render_mode="rgb_array" if video else None)
    if video:
        env = gym.wrappers.RecordVideo(env, os.path.dirname(video), name_prefix=os.path.basename(video),
                                       episode_trigger=lambda episode: episode == 0, disable_logger=True)
    low, high = env.action_space.low, env.action_space.high
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, episodic_return, succeeded = False, 0.0, None
        while not done:
            with torch.no_grad():
                action = act_fn(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0].cpu().numpy()
            obs, reward, terminated, truncated, info = env.step(low + 0.5 * (action + 1.0) * (high - low))
            episodic_return += float(reward)
            done = terminated or truncated
            if "success" in info:
                succeeded = bool(succeeded) or bool(info["success"])
        returns.append(episodic_return)
        if successes is not None and succeeded is not None:
            successes.append(succeeded)
    env.close()
    return np.array(returns)
# --- end shared: evaluation ---


# --- shared: checkpoint ---
# Everything needed to resume, readable with torch.load(path, weights_only=True): `{exp_name}.pt` holds
# the networks, optimizers, step and args; `{exp_name}_buffer.pt` beside it the replay buffer's filled
# part and every random stream's state, so that a resumed run neither refills its buffer nor replays its
# draws; `{exp_name}_best.pt` the weights of the best evaluation, so that a late collapse keeps the good policy.
CHECKPOINT_METADATA = ("algo", "env_id", "step", "num_updates", "best_return", "args")  # beside the modules' state dicts


def all_finite(modules: dict) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules.values() if isinstance(m, nn.Module) for p in m.parameters())


def atomic_save(state: dict, path: str):
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # a crash while writing never destroys the last good file


def save_checkpoint(path: str, algo: str, step: int, num_updates: int, best_return: float, args, modules: dict) -> bool:
    if not all_finite(modules):
        return False  # diverged: keep the last good checkpoint rather than overwrite it with NaNs
    state = dict(zip(CHECKPOINT_METADATA, (algo, args.env_id, step, num_updates, best_return, asdict(args))))
    state.update({name: m.state_dict() if hasattr(m, "state_dict") else m for name, m in modules.items()})
    atomic_save(state, path)
    return True


def load_checkpoint(path: str, algo: str, args, modules: dict, device: torch.device) -> tuple[int, int, float]:
    """Loads every module in place; returns the env step and the number of updates to continue from, and the
    best evaluation's return so far."""
    if not os.path.isfile(path):
        fail(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        fail(f"cannot read checkpoint {path!r}: {type(e).__name__}: {str(e).splitlines()[0]}")
    if not isinstance(state, dict) or state.get("algo") != algo:
        fail(f"checkpoint {path!r} was not written by {algo} (found {state.get('algo') if isinstance(state, dict) else type(state).__name__})")
    if state["env_id"] != args.env_id:
        fail(f"checkpoint {path!r} is for {state['env_id']}, not {args.env_id}")
    dropped = sorted(set(state) - set(modules) - set(CHECKPOINT_METADATA))
    if dropped:  # e.g. the policy's weight average of a --score-ema run, resumed without the flag
        fail(f"checkpoint {path!r} has {', '.join(map(repr, dropped))}, which this run would drop: it was written with other flags")
    for name, m in modules.items():
        if name not in state:
            fail(f"checkpoint {path!r} has no {name!r}: it was written with other flags")
        if isinstance(m, torch.Tensor):
            with torch.no_grad():
                m.copy_(state[name])
        else:
            m.load_state_dict(state[name])
    return int(state["step"]), int(state.get("num_updates", 0)), float(state.get("best_return", -math.inf))


def random_state(envs) -> dict:
    """Every random stream the run draws from: Python's, NumPy's (warm-up actions), torch's (sampling,
    minibatches) and each training env's (its resets; None where it is not a NumPy Generator, as in DeepMind
    Control's). As tensors and plain numbers, for weights_only loading."""
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "envs": [getattr(getattr(env.unwrapped.np_random, "bit_generator", None), "state", None) for env in envs.envs]}


def set_random_state(state: dict, envs):
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    np.random.set_state((state["numpy"][0], state["numpy"][1].numpy().astype(np.uint32), *state["numpy"][2:]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for env, env_state in zip(envs.envs, state["envs"]):
        if env_state is not None:
            env.unwrapped.np_random.bit_generator.state = env_state


def save_replay(path: str, step: int, rb: ReplayBuffer, envs):
    atomic_save({"step": step, "buffer": rb.state_dict(), "random": random_state(envs)}, path)


def load_replay(path: str, step: int, rb: ReplayBuffer, envs) -> bool:
    """Restores the buffer and the random streams saved with the checkpoint of this step; False (the buffer
    refills) when there is none, e.g. beside a checkpoint written by another version or the `_best.pt` weights."""
    if not os.path.isfile(path):
        print(f"no replay buffer at {path}: the buffer refills", file=sys.stderr)
        return False
    state = torch.load(path, weights_only=True)
    if state["step"] != step:  # a crash between the two writes
        print(f"the replay buffer at {path} is from step {state['step']}, not {step}: the buffer refills", file=sys.stderr)
        return False
    rb.load_state_dict(state["buffer"])
    set_random_state(state["random"], envs)
    return True
# --- end shared: checkpoint ---


# --- shared: cuda graphs ---
# Speed (--cudagraphs): one CUDA graph per function, as LeanRL does, over the same eager functions.
class CudaGraphed:
    """Calls fn eagerly `warmup` times (on a side stream, so that cuBLAS, the allocator and Adam's state are
    set up before capture), then records its kernels once and from then on replays them: a call copies its
    tensors into the graph's static inputs and returns the static outputs, valid until the next call. Random
    draws inside fn are fresh on every replay. fn must not synchronise with the host; its optimizers need
    Adam(capturable=True)."""

    def __init__(self, fn, warmup: int = 3):
        self.fn, self.warmup, self.calls, self.graph = fn, warmup, 0, None

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.warmup:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                out = self.fn(*args)
            torch.cuda.current_stream().wait_stream(stream)
            return out
        if self.graph is None:
            self.static_args = [a.clone() for a in args]
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records, does not run: the replay below runs this call
                self.static_out = self.fn(*self.static_args)
        for static, a in zip(self.static_args, args):
            static.copy_(a)
        self.graph.replay()
        return self.static_out
# --- end shared: cuda graphs ---


# ---------------------------------------------------------------------------------------------
# The training loop (DQS, the paper's algorithm: one critic step, then one score step on the updated
# critic, per env step after uniform-random warm-up actions)
if __name__ == "__main__":
    args = parse_args()
    check_args(args)
    # --- shared: loop setup ---
    check_env(args.env_id)
    run_dir, writer, device = start_run(args)

    # env setup: one env in a vector env, NEXT_STEP autoreset (Gymnasium 1.x default)
    envs = gym.vector.SyncVectorEnv([make_env(args.env_id, args.seed)], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    low, high = envs.single_action_space.low, envs.single_action_space.high
    # --- end shared: loop setup ---

    score_net = ScoreNetwork(obs_dim, act_dim).to(device)
    policy_net = copy.deepcopy(score_net) if args.score_ema > 0 else score_net  # the weights the policy samples with
    # --- shared: critics ---
    qf1 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr, capturable=args.cudagraphs)
    # --- end shared: critics ---
    score_optimizer = torch.optim.Adam(list(score_net.parameters()), lr=args.score_lr, capturable=args.cudagraphs)
    if args.compile:  # in place: the parameters and the checkpoint's keys stay those of the eager modules
        for m in (score_net, qf1, qf2, qf1_target, qf2_target):
            m.compile()
    modules = {"score_net": score_net, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target,
               "q_optimizer": q_optimizer, "score_optimizer": score_optimizer} | ({"policy_net": policy_net} if args.score_ema > 0 else {})
    # T, a device tensor updated in place when annealed or tracked (it travels with the checkpoint)
    temperature = torch.tensor(args.temperature, device=device)
    modules["temperature"] = temperature
    schedule = Schedule(args.sigma_min, args.sigma_max)

    def act(obs):
        """A fresh sample of the diffusion policy at these states, squashed into the box: a = tanh(x)."""
        x = sample_actions(policy_net.condition(obs, temperature), (obs.shape[0], act_dim), args.num_diffusion_steps, schedule,
                           device=device)
        return torch.tanh(x)

    def act_critic(obs, num_mc_samples=None):
        """Not the paper's (--acting-score critic): the same sampler driven by the critic's own score estimate."""
        return critic_policy(qf1, qf2, obs, temperature, args, schedule, num_mc_samples)

    acting = act_critic if args.acting_score == "critic" else act  # acting and evaluation
    act_backup = (lambda obs: act_critic(obs, args.backup_mc_samples)) if args.backup_score == "critic" else act
    temperature_driver = {}  # what T follows, for the log

    def act_eval(obs):
        return best_of(acting, lambda o, a: torch.min(qf1(o, a), qf2(o, a)), obs, args.eval_best_of)

    # the evaluation beside the one-draw headline (--eval-beside-best-of): the greedier best of M draws by the critic
    m_beside = args.eval_beside_best_of
    eval_beside = {f"best_of_{m_beside}": lambda obs: best_of(acting, lambda o, a: torch.min(qf1(o, a), qf2(o, a)), obs, m_beside)
                   } if m_beside > 1 else {}

    def log_target_at(obs):
        """T log p(x) + const at these states (B, 1, obs_dim), through the critics' eager forward also under --compile."""
        return twin_log_target(qf1, qf2, obs, temperature, args.exact_bounds)

    def update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations):
        with torch.no_grad():
            next_state_actions = act_backup(b_next_obs)  # a' = tanh(x), x a fresh sample at s'
            if args.temperature_scale is not None:  # not the paper's: T follows the critic's action-gradients at the policy's a'
                _, grads = values_and_action_grads(twin_log_target(qf1, qf2, b_next_obs.unsqueeze(1), temperature),
                                                   next_state_actions.unsqueeze(1), 1)
                temperature_driver["action_grad_rms"] = grads.pow(2).mean().sqrt()
                track_temperature(temperature, temperature_from_critic(grads, args.temperature_scale), 1.0 if num_updates == 0 else 0.01)
            qf1_next_target = qf1_target(b_next_obs, next_state_actions)
            qf2_next_target = qf2_target(b_next_obs, next_state_actions)
            # no entropy term: the diffusion policy's density is intractable (as in the authors' code)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target)
            next_q_value = b_rewards + (1 - b_terminations) * args.gamma * min_qf_next_target

        # --- shared: critic loss ---
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
        # --- end shared: critic loss ---

    def update_score(b_obs, b_actions):
        """The score step, on the critic just updated; with exact bounds the diffusion lives in pre-tanh space."""
        x_0 = torch.atanh(b_actions.clamp(-1 + 1e-6, 1 - 1e-6)) if args.exact_bounds else b_actions
        score_loss = score_matching_loss(score_net, log_target_at(b_obs.unsqueeze(1)), b_obs, x_0, temperature, args.num_mc_samples,
                                         schedule, form=args.score_target, chunk_size=args.mc_chunk_size)
        score_optimizer.zero_grad()
        score_loss.backward()
        score_optimizer.step()
        if args.score_ema > 0:  # not the paper's: policy_net <- decay policy_net + (1 - decay) score_net
            soft_update(policy_net, score_net, 1 - args.score_ema)
        return {"score_loss": score_loss}

    def final_stats():
        """The summary's DQS-only fields: the temperature at the end, and what it followed."""
        return {"temperature": float(temperature)} | {f"temperature_{k}": float(v) for k, v in temperature_driver.items()}

    # --- shared: resume ---
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    start_step, num_updates, best_return = load_checkpoint(args.resume, ALGO, args, modules, device) if args.resume else (0, 0, -math.inf)
    restored = bool(args.resume) and load_replay(args.resume.removesuffix(".pt") + "_buffer.pt", start_step, rb, envs)
    # --- end shared: resume ---
    policy = acting  # acting on the env's states (the backup calls act itself)
    if args.cudagraphs:  # captured after --resume has loaded the optimizers' state; the critic-driven sampler
        if args.backup_score == "network":  # the critic-driven sampler branches on t on the host: eager
            update_critic = CudaGraphed(update_critic)
        update_score = CudaGraphed(update_score)
        if args.acting_score == "network":
            policy, act_eval = CudaGraphed(policy), CudaGraphed(act_eval)
    # --- shared: loop start ---
    ckpt_path = os.path.join(run_dir, f"{args.exp_name}.pt")
    video_path = os.path.join(run_dir, "videos", "eval-step{}") if args.capture_video else None
    start_time = time.time()
    last_return, eval_returns, last_eval_step, interrupted, diverged = float("nan"), None, -1, False, None
    beside_returns = {}
    first_update_step, first_update_time = None, None  # for the SPS of the training phase alone
    stop = {"held": False, "pending": False}

    def on_stop(signum, frame):
        """Ctrl-C and SIGTERM (a cluster's preemption) end the run as KeyboardInterrupt, but wait while the checkpoint
        files are written. (Python runs this in the main thread whichever thread the signal hit, which a thread's
        signal mask cannot promise: TensorBoard's writer thread can take it.)"""
        if stop["held"]:
            stop["pending"] = True
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)

    def evaluate_and_save(step: int):
        """Evaluates the policy; with --save-model checkpoints the run (weights, buffer, random states) and keeps
        the best evaluation's weights in `{exp_name}_best.pt`."""
        global eval_returns, last_eval_step, best_return
        successes = []
        eval_returns = evaluate(act_eval, args.env_id, args.eval_episodes, args.seed + 10_000, device, video_path and video_path.format(step),
                                successes)
        writer.add_scalar("eval/episodic_return", eval_returns.mean(), step)
        for name, act_fn in eval_beside.items():  # the script's other evaluation, on the same starts
            beside_returns[name] = evaluate(act_fn, args.env_id, args.eval_episodes, args.seed + 10_000, device)
            writer.add_scalar(f"eval/{name}_return", beside_returns[name].mean(), step)
        if successes:
            writer.add_scalar("eval/success_rate", np.mean(successes), step)
        stop["held"] = True  # the files are written together: Ctrl-C or SIGTERM waits until they are, then stops the run
        try:
            if eval_returns.mean() > best_return:
                best_return = float(eval_returns.mean())
                if args.save_model:
                    save_checkpoint(ckpt_path.removesuffix(".pt") + "_best.pt", ALGO, step, num_updates, best_return, args, modules)
            if args.save_model and save_checkpoint(ckpt_path, ALGO, step, num_updates, best_return, args, modules):
                save_replay(ckpt_path.removesuffix(".pt") + "_buffer.pt", step, rb, envs)
            last_eval_step = step
        finally:
            stop["held"] = False
        if stop["pending"]:
            stop["pending"] = False
            raise KeyboardInterrupt

    # TRY NOT TO MODIFY: start the game (a restored run goes on with its env's own random stream)
    obs, _ = envs.reset(seed=None if restored else args.seed)
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
            # `rb.size` rather than the step: a run resumed with its saved buffer updates at once, one resumed
            # without it (a checkpoint of another version) refills its buffer with policy actions first.
            if rb.size >= max(args.learning_starts, args.batch_size):
                if first_update_step is None:
                    first_update_step, first_update_time = global_step, time.time()
                b_obs, b_actions, b_next_obs, b_rewards, b_terminations = rb.sample(args.batch_size)
                # --- end shared: loop start ---
                if args.temperature_final is not None:  # annealed: T, read by the update on the device, moves
                    temperature.fill_(temperature_at(num_updates, args))
                losses = {**update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations), **update_score(b_obs, b_actions)}
                # --- shared: loop middle ---
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
                # --- end shared: loop middle ---
                    writer.add_scalar("charts/temperature", float(temperature), global_step)
                    for k, v in temperature_driver.items():
                        writer.add_scalar(f"charts/temperature_{k}", float(v), global_step)

            # --- shared: loop end ---
            if global_step % 100 == 0:
                sps = int((global_step + 1 - start_step) / (time.time() - start_time))
                writer.add_scalar("charts/SPS", sps, global_step)
                pbar.set_postfix(sps=sps, ret=f"{last_return:.1f}", eval=f"{eval_returns.mean():.1f}" if eval_returns is not None else "-", refresh=False)
            pbar.update(1)

            if (global_step + 1) % args.eval_every == 0:
                if not all_finite(modules):
                    diverged = f"non-finite network weights at step {global_step + 1}"
                    break
                evaluate_and_save(global_step + 1)
        else:
            global_step = args.total_timesteps
    except KeyboardInterrupt:
        interrupted = True
        global_step = max(global_step, last_eval_step)  # held back while a checkpoint was written, it lands after it
    pbar.close()
    loop_end_time = time.time()

    # the end of a run: a final evaluation, checkpoint and summary (also after Ctrl-C or SIGTERM, never after NaN)
    if diverged is None and last_eval_step != global_step:
        evaluate_and_save(global_step)
    if diverged is None and args.save_model and all_finite(modules):
        print(f"model saved to {ckpt_path}")
    wall_time = time.time() - start_time
    update_sps = (global_step - first_update_step) / (loop_end_time - first_update_time) if first_update_step is not None else None
    summary = {"algo": ALGO, "env_id": args.env_id, "seed": args.seed, "global_step": global_step, "num_updates": num_updates,
               "eval_return_mean": float(eval_returns.mean()) if eval_returns is not None else None,
               "eval_return_std": float(eval_returns.std()) if eval_returns is not None else None,
               "best_eval_return": best_return if best_return > -math.inf else None,
               "eval_beside_return_mean": {name: float(r.mean()) for name, r in beside_returns.items()},
               "sps": (global_step - start_step) / wall_time, "update_sps": update_sps, "wall_time_s": wall_time,
               "stopped": diverged or (f"interrupted at step {global_step}" if interrupted else None), "args": asdict(args)} | final_stats()
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{ALGO} {args.env_id} step {global_step}: eval return {summary['eval_return_mean']} +- {summary['eval_return_std']} ({run_dir})")
    envs.close()
    writer.close()
    if diverged:
        fail(f"{diverged}; the last good checkpoint is kept" if args.save_model else diverged)
    # --- end shared: loop end ---
