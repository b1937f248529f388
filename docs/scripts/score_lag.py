"""Offline diagnostic for a 1-D-action task: with the critic frozen, can DQS's score network learn
exp(Q/T), and which piece limits it: the sampler, the network, or the Monte-Carlo score target?

    python docs/scripts/oracle_shadow.py --env-id InvertedPendulum-v4 --no-cuda --learning-starts 5000 --total-timesteps 10000 \
        --eval-every 2500 --eval-episodes 5 --temperature 0.05 --save-model
    python docs/scripts/score_lag.py runs/InvertedPendulum-v4__oracle__1__*/oracle.pt

The checkpoint's twin critics are frozen. States and actions come from rolling out the exact
Boltzmann policy exp(Qmin/T) on the box (the oracle), so the score network trains on data from its
own target, the easiest case. The target density is the --exact-bounds one, on pre-tanh x:
    log p(x) = Qmin(s, tanh x) / T + sum log(1 - tanh(x)^2),
whose executed actions tanh(x) are exactly exp(Qmin/T) on the box, so the exact policy is the yardstick.
Because x is 1-D, the noised score grad log p_t(x_t), p_t = p * N(0, h(t)), is computed exactly by
quadrature on a grid, which gives three yardsticks:

1. the sampler driven by the exact noised score (no network): the error of Euler-Maruyama with N
   steps and of the N(0, h(1)) prior alone;
2. the score network trained on the exact target: what the network and its loss can reach;
3. the Monte-Carlo score targets themselves against the exact score, per quarter of t: S_K of dqs.py
   (K perturbed actions, "gradK"); the same K samples' noise form E_w[z] / sqrt(h(t)) ("noiseK",
   equal to S_K in expectation, but its variance grows as 1 / h(t) for small t); dqs.py's blend of the
   two ("blendK", --score-target blend) and Reverse Flow Matching's control variate of the two ("cvK",
   --score-target cv);
5. dqs.py's critic-driven sampler (--acting-score critic, no network) with each estimator above the switch.
4. the score network trained on those targets, as DQS trains it.

The flags after --lr change one thing at a time against dqs.py (learning rate, standardised
observations, the embedding's scale, the loss weight's floor, a noise-predicting output, an EMA of the
weights, the batch, the width) to see which, if any, lets the network fit; --single-state asks the
same of one state instead of thousands; --paper-energy trains on
the paper's default target instead (Q at the unsquashed x), against the same yardstick.

Reported per row, over held-out states: the Wasserstein-1 distance between the sampled tanh(x) and
the exact policy (0 is exact, 2 the box width), the fraction of saturated actions (|a| > 0.99), the
error of the sampled mean per state and the ratio of sampled to exact standard deviation; for trained
networks also the held-out score error lambda(t) (s_theta - exact)^2 against the exact noised score,
overall and per quarter of t.
"""
import argparse
import copy
import math
import os
import sys
import time

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repo root, for dqs.py
import dqs  # noqa: E402

GRID_HALF_WIDTH, GRID_POINTS = 6.0, 2001  # pre-tanh grid: tanh(6) = 1 - 1.2e-5
GH_NODES = 24  # Gauss-Hermite nodes for the exact score where the noise is narrower than the grid


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a dqs.py / dqs_diag.py checkpoint (its qf1 and qf2 are used)")
    p.add_argument("--env-id", default="InvertedPendulum-v4")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--states", type=int, default=4000, help="oracle roll-out steps to train on")
    p.add_argument("--eval-states", type=int, default=64)
    p.add_argument("--samples-per-state", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=4000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--targets", default="exact,grad16,blend16", help="comma list of exact, gradK, noiseK, blendK, cvK")
    p.add_argument("--target-error-k", default="16,64,256", help="K values for the table of target errors (empty: none)")
    p.add_argument("--steps", default="20,50,200", help="sampler N values, comma list")
    p.add_argument("--lr", type=float, default=3e-4, help="the score network's Adam learning rate (dqs.py: 3e-4)")
    p.add_argument("--obs-norm", action="store_true", help="feed the score network standardised observations")
    p.add_argument("--emb-scale", type=float, default=None, help="multiply t and T by this before the sinusoidal embedding (dqs.py, the authors': 1)")
    p.add_argument("--lambda-floor", type=float, default=1e-3, help="the loss weight is lambda(t) = h(t) + this (dqs.py: 1e-3)")
    p.add_argument("--eps-param", action="store_true",
                   help="the network predicts the noise: s_theta = -net / sqrt(h(t)) (dqs.py: s_theta = net)")
    p.add_argument("--ema", type=float, default=None, help="sample with an exponential moving average of the weights, this decay")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256, help="the score network's width (dqs.py: 256)")
    p.add_argument("--paper-energy", action="store_true",
                   help="Monte-Carlo targets of the paper's default instead: Q at unsquashed x, x_0 = a (no exact target then)")
    p.add_argument("--single-state", action="store_true",
                   help="train and evaluate at one state only (the narrowest exact policy of the first 200)")
    p.add_argument("--former-network", action="store_true",
                   help="the score network dqs.py had before the authors' details: angles 1000 t 10000^(-k/64), PyTorch's default init")
    p.add_argument("--critic-sampler-k", default="16,64,256",
                   help="K values for rows of dqs.py's critic-driven sampler (--acting-score critic; empty: none)")
    p.add_argument("--clean-until", default="0.6", help="comma list of its switch points, t up to which it uses grad Q / T")
    p.add_argument("--critic-sampler-forms", default="blend,cv", help="comma list of its estimators above the switch (grad, blend, cv)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def former_embedding(x, dim=128, max_period=None):
    """The DDPM-style code dqs.py used before it took the authors': angles 1000 x 10000^(-k / 64)."""
    w = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=x.dtype, device=x.device) / (dim // 2))
    angle = 1000.0 * x.unsqueeze(-1) * w
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def load_qmin(path, obs_dim, act_dim):
    state = torch.load(path, map_location="cpu", weights_only=True)
    qf1, qf2 = dqs.SoftQNetwork(obs_dim, act_dim), dqs.SoftQNetwork(obs_dim, act_dim)
    qf1.load_state_dict(state["qf1"])
    qf2.load_state_dict(state["qf2"])
    for p in list(qf1.parameters()) + list(qf2.parameters()):
        p.requires_grad_(False)
    return lambda obs, a: torch.min(qf1(obs, a), qf2(obs, a)), state.get("step")


def box_policy(qmin, obs, temperature, points=401):
    """The exact policy exp(Qmin/T) on a grid of the box: grid (points,), probabilities (S, points)."""
    a = torch.linspace(-1, 1, points)
    q = qmin(obs.unsqueeze(1), a.reshape(1, -1, 1))
    return a, torch.softmax(q / temperature, 1), q


def moments(grid, p):
    """Mean and standard deviation per state of the policies p (S, points) on the grid."""
    mean = (p * grid).sum(1)
    return mean, (p * (grid - mean[:, None]) ** 2).sum(1).sqrt()


@torch.no_grad()
def collect(qmin, env_id, n, temperature, seed):
    """n (obs, action) pairs from rolling out the exact policy; returns obs (n, d), actions (n, 1) and
    the episode returns."""
    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    obs_list, act_list, returns, ep_return = [], [], [], 0.0
    obs, _ = env.reset(seed=seed)
    for _ in range(n):
        o = torch.as_tensor(obs, dtype=torch.float32)[None]
        grid, p, _ = box_policy(qmin, o, temperature)
        a = grid[torch.multinomial(p[0], 1)] + (torch.rand(1) - 0.5) * (grid[1] - grid[0])
        a = a.clamp(-1, 1)
        obs_list.append(o[0])
        act_list.append(a)
        obs, reward, terminated, truncated, _ = env.step(low + 0.5 * (a.numpy() + 1.0) * (high - low))
        ep_return += float(reward)
        if terminated or truncated:
            returns.append(ep_return)
            ep_return = 0.0
            obs, _ = env.reset()
    env.close()
    return torch.stack(obs_list), torch.stack(act_list), returns


class ExactScore:
    """The exact noised score of p(x) ∝ exp(Qmin(s, tanh x) / T) (1 - tanh(x)^2) for a fixed set of states,
    by quadrature on a pre-tanh grid; log p on the grid is computed once per state."""

    def __init__(self, qmin, obs, temperature):
        self.qmin, self.temperature = qmin, temperature
        self.x = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
        self.dx = float(self.x[1] - self.x[0])
        with torch.no_grad():
            self.log_p = torch.cat([self.log_density(obs[i : i + 64].unsqueeze(1), self.x.reshape(1, -1, 1))
                                    for i in range(0, len(obs), 64)])  # (S, GRID_POINTS)

    def log_density(self, obs, x):
        return self.qmin(obs, torch.tanh(x)) / self.temperature + dqs.log_det_tanh_jacobian(x)

    def __call__(self, idx, obs, x_t, t):
        """Score at x_t (B, 1) and times t (B,) for states obs = states[idx]."""
        h = dqs.Schedule().h(t).unsqueeze(-1)  # (B, 1)
        score = torch.empty_like(x_t)
        wide = (h.sqrt() > 4 * self.dx).squeeze(-1)
        if wide.any():  # p_t = p * N(0, h) on the grid: the weighted mean of (x - x_t) / h
            diff = self.x.unsqueeze(0) - x_t[wide]  # (B', G)
            w = torch.softmax(self.log_p[idx[wide]] - diff.pow(2) / (2 * h[wide]), 1)
            score[wide] = (w * diff).sum(1, keepdim=True) / h[wide]
        tiny = (h < 1e-6).squeeze(-1)  # noise far narrower than p's features: p_t = p to O(h), the clean score
        if tiny.any():
            x = x_t[tiny].detach().requires_grad_(True)
            with torch.enable_grad():
                (score[tiny],) = torch.autograd.grad(self.log_density(obs[tiny], x).sum(), x)
        narrow = ~wide & ~tiny
        if narrow.any():
            # where the kernel is narrower than a few grid cells the grid fails; there the gradient form
            # grad log p_t(x_t) = E_u[p(x) grad log p(x)] / E_u[p(x)], x = x_t + sqrt(h) u, u ~ N(0, 1), is
            # integrated by Gauss-Hermite quadrature around x_t instead
            u, w_u = np.polynomial.hermite_e.hermegauss(GH_NODES)
            x = x_t[narrow] + h[narrow].sqrt() * torch.as_tensor(u, dtype=x_t.dtype)  # (B'', GH_NODES)
            x = x.unsqueeze(-1).detach().requires_grad_(True)
            with torch.enable_grad():
                log_p = self.log_density(obs[narrow].unsqueeze(1), x)
                (grad,) = torch.autograd.grad(log_p.sum(), x)
            w = torch.softmax(log_p.detach() + torch.as_tensor(np.log(w_u), dtype=x_t.dtype), 1)
            score[narrow] = (w * grad.squeeze(-1)).sum(1, keepdim=True)
        return score


class NoiseParameterised(torch.nn.Module):
    """s_theta(s, x, t) = -eps_theta(s, x, t) / sqrt(h(t)): the network outputs the scale of the noise, O(1)
    at every t, instead of a score whose size runs from 1 (t = 1) to |grad Q| / T (t -> 0)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.act_dim = net, net.act_dim

    def forward(self, obs, x, t, temperature):
        return -self.net(obs, x, t, temperature) / dqs.Schedule().h(t).sqrt().unsqueeze(-1)

    def condition(self, obs, temperature):
        score = self.net.condition(obs, temperature)
        return lambda x, t: -score(x, t) / dqs.Schedule().h(t).sqrt()


def energy_exact(qmin, temperature):
    """T log p(x) of the exact-bounds target on pre-tanh x, as dqs.py --exact-bounds: Qmin(s, tanh x) + T log|d tanh x / dx|."""
    return lambda o, x: qmin(o, torch.tanh(x)) + temperature * dqs.log_det_tanh_jacobian(x)


class CriticSampler:
    """dqs.critic_score at the sampler's states: what dqs.py acts with under --acting-score critic."""

    def __init__(self, energy, k, clean_until, form):
        self.energy, self.k, self.clean_until, self.form = energy, k, clean_until, form

    def condition(self, obs, temperature):
        return dqs.critic_score(lambda x: self.energy(obs.unsqueeze(1), x), temperature, self.k, self.clean_until, form=self.form)


def mc_target(energy, obs, x_t, t, temperature, k, form):
    """The Monte-Carlo score target with K samples: 'grad' and 'blend' are dqs.mc_score_target's forms (the
    paper's S_K and the opt-in blend); 'noise' is the same weights on z alone, E_w[z] / sqrt(h(t))."""
    if form in ("grad", "blend", "cv"):
        return dqs.mc_score_target(lambda x: energy(obs.unsqueeze(1), x), x_t, t, temperature, k, form=form)
    h = dqs.Schedule().h(t).reshape(-1, 1, 1)
    z = torch.randn(x_t.shape[0], k, x_t.shape[1])
    w = torch.softmax(energy(obs.unsqueeze(1), x_t.unsqueeze(1) + h.sqrt() * z) / temperature, 1).unsqueeze(-1)
    return (w * z).sum(1) / h.reshape(-1, 1).sqrt()


def conditioned(score_fn, obs, temperature):
    """score_fn(obs, x, t, T) at fixed states and T as the sampler's score(x, t)."""
    if hasattr(score_fn, "condition"):
        return score_fn.condition(obs, temperature)
    return lambda x, t: score_fn(obs, x, t.expand(x.shape[0]), temperature)


@torch.no_grad()
def fidelity(score_fn, obs, temperature, num_steps, m, box):
    """W1 of the sampled tanh(x) against the exact box policy, and the saturated fraction."""
    grid, p = box
    s = obs.shape[0]
    x = dqs.sample_actions(conditioned(score_fn, obs.repeat_interleave(m, 0), temperature), (s * m, 1), num_steps)
    a = torch.tanh(x).reshape(s, m)
    cdf_sampled = (a.unsqueeze(-1) <= grid).float().mean(1)
    w1 = (p.cumsum(1) - cdf_sampled).abs().mean(1) * 2.0
    mean_exact, std_exact = moments(grid, p)
    return (float(w1.mean()), float((a.abs() > 0.99).float().mean()), float((a.mean(1) - mean_exact).abs().mean()),
            float(a.std(1).mean() / std_exact.mean()))


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env = gym.make(args.env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    if act_dim != 1:
        sys.exit(f"error: {args.env_id} has {act_dim} action dimensions; this diagnostic needs 1")
    qmin, ckpt_step = load_qmin(args.checkpoint, obs_dim, act_dim)
    if args.former_network:  # after the critics are built, so that both networks see the same states
        dqs.sinusoidal_embedding, dqs.orthogonal_init = former_embedding, lambda module: None
    if args.emb_scale is not None:
        embed = dqs.sinusoidal_embedding
        dqs.sinusoidal_embedding = lambda x, *a, **k: embed(args.emb_scale * x, *a, **k)
    T = args.temperature

    start = time.time()
    obs_all, act_all, returns = collect(qmin, args.env_id, args.states + args.eval_states, T, args.seed)
    if args.single_state:  # the narrowest exact policy among the first 200 states, repeated, with fresh exact actions
        grid, p, _ = box_policy(qmin, obs_all[:200], T)
        j = int(moments(grid, p)[1].argmin())
        obs_all = obs_all[j : j + 1].expand(len(obs_all), -1).clone()
        cells = torch.multinomial(p[j], len(obs_all), replacement=True)
        act_all = (grid[cells] + (torch.rand(len(obs_all)) - 0.5) * (grid[1] - grid[0])).clamp(-1, 1).unsqueeze(-1)
    perm = torch.randperm(len(obs_all))
    train_idx, eval_idx = perm[args.eval_states :], perm[: args.eval_states]
    exact = ExactScore(qmin, obs_all, T)
    eval_obs = obs_all[eval_idx]
    # what the score network sees: the raw observations, or standardised with the training states' statistics
    obs_net = (obs_all - obs_all[train_idx].mean(0)) / obs_all[train_idx].std(0) if args.obs_norm else obs_all
    grid, p_box, q_box = box_policy(qmin, eval_obs, T)
    box = (grid, p_box)
    print(f"checkpoint step {ckpt_step}, T {T:g}: {len(obs_all)} oracle steps, episode returns "
          f"{[round(r) for r in returns[:8]]}{' ...' if len(returns) > 8 else ''}; held-out states: Qmin spread over the box "
          f"{float((q_box.max(1).values - q_box.min(1).values).mean()):.1f}, exact policy std "
          f"{float(moments(grid, p_box)[1].mean()):.3f}, saturated "
          f"{float((p_box * (grid.abs() > 0.99)).sum(1).mean()):.3f} ({time.time() - start:.0f} s)", flush=True)
    with torch.no_grad():  # where the paper's unsquashed target exp(Qmin(x)/T) puts mass outside the box
        edge = torch.tensor([-1.0, 1.0, -1.2, 1.2]).reshape(1, 4, 1)
        q_edge = qmin(eval_obs.unsqueeze(1), edge)
        rising = ((q_edge[:, 2] > q_edge[:, 0]) | (q_edge[:, 3] > q_edge[:, 1])).float().mean()
    print(f"Qmin rises past the box edge (Qmin(+-1.2) > Qmin(+-1)) at {float(rising):.0%} of held-out states", flush=True)
    steps = [int(n) for n in args.steps.split(",")]
    m = args.samples_per_state

    def row(name, score_fn, extra="", obs=eval_obs):
        cells = [fidelity(score_fn, obs, T, n, m, box) for n in steps]
        print(f"{name:22s} " + "  ".join(f"N={n}: w1 {w:.3f} sat {s:.2f} |mean err| {e:.3f} std ratio {r:.2f}"
                                         for n, (w, s, e, r) in zip(steps, cells)) + extra, flush=True)

    # 1. the sampler alone, on the exact score
    row("exact score (no network)", lambda o, x, t, temp: exact(eval_idx.repeat_interleave(m), o, x, t))

    # 1b. dqs.py's critic-driven sampler (no network): the clean score grad E / T up to the switch, the blend above
    if not args.paper_energy:
        for form in args.critic_sampler_forms.split(","):
            for k in [int(k) for k in args.critic_sampler_k.split(",") if k]:
                for clean_until in [float(c) for c in args.clean_until.split(",")]:
                    torch.manual_seed(args.seed)
                    row(f"critic sampler {form}{k} clean<={clean_until:g}", CriticSampler(energy_exact(qmin, T), k, clean_until, form))

    # held-out pairs (x_t, t) for the score error against the exact target
    g = torch.Generator().manual_seed(args.seed + 1)
    t_eval = torch.rand(len(eval_idx) * 16, generator=g)
    idx_eval = eval_idx.repeat(16)
    x0_eval = torch.atanh(act_all[idx_eval].clamp(-1 + 1e-6, 1 - 1e-6))
    x_eval = x0_eval + dqs.Schedule().h(t_eval).sqrt().unsqueeze(-1) * torch.randn(x0_eval.shape, generator=g)
    s_eval = exact(idx_eval, obs_all[idx_eval], x_eval, t_eval)
    lam_eval = dqs.Schedule().h(t_eval) + 1e-3

    s_signal = lam_eval * s_eval.pow(2).squeeze(-1)
    quarter = lambda v: " ".join(f"{float(v[(t_eval >= lo) & (t_eval < lo + 0.25)].mean()):8.3g}" for lo in (0.0, 0.25, 0.5, 0.75))
    print(f"{'lambda(t) * exact score^2':28s} per quarter of t: {quarter(s_signal)}")
    if args.paper_energy:  # as dqs.py by default: Q queried at the unsquashed x, also outside the box
        energy, to_x = qmin, lambda a: a
        if "exact" in args.targets.split(","):
            sys.exit("error: --paper-energy has no exact target (exp(Q/T) on the real line need not be normalisable)")
    else:  # as dqs.py --exact-bounds
        energy = energy_exact(qmin, T)
        to_x = lambda a: torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    for k in ([] if args.paper_energy else [int(k) for k in args.target_error_k.split(",") if k]):
        for form in ("grad", "noise", "blend", "cv"):
            torch.manual_seed(args.seed)
            y = mc_target(energy, obs_all[idx_eval], x_eval, t_eval, T, k, form)
            print(f"{'target error ' + form + str(k):28s} per quarter of t: {quarter(lam_eval * (y - s_eval).pow(2).squeeze(-1))}",
                  flush=True)

    for target in [t for t in args.targets.split(",") if t]:
        torch.manual_seed(args.seed)
        net = dqs.ScoreNetwork(obs_dim, act_dim, hidden=args.hidden)
        if args.eps_param:
            net = NoiseParameterised(net)
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        ema = copy.deepcopy(net).requires_grad_(False) if args.ema else net
        t0 = time.time()
        for step in range(1, args.train_steps + 1):
            idx = train_idx[torch.randint(len(train_idx), (args.batch_size,))]
            obs = obs_all[idx]
            x_0 = to_x(act_all[idx])
            t = torch.rand(args.batch_size)
            h = dqs.Schedule().h(t)
            x_t = x_0 + h.sqrt().unsqueeze(-1) * torch.randn_like(x_0)
            if target == "exact":
                y = exact(idx, obs, x_t, t)
            else:
                form = target.rstrip("0123456789")
                k = int(target[len(form):])
                y = mc_target(energy, obs, x_t, t, T, k, form)
            loss = ((h + args.lambda_floor) * (net(obs_net[idx], x_t, t, T) - y.detach()).pow(2).mean(-1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if args.ema:
                with torch.no_grad():
                    for p_ema, p in zip(ema.parameters(), net.parameters()):
                        p_ema.lerp_(p, 1 - args.ema)
            if step % args.eval_every == 0:
                with torch.no_grad():
                    err = lam_eval * (ema(obs_net[idx_eval], x_eval, t_eval, T) - s_eval).pow(2).mean(-1)
                    by_t = quarter(err)
                error = "" if args.paper_energy else f"  score error {float(err.mean()):.3g} (t quarters {by_t})"
                row(f"{target}, {step} steps", ema, obs=obs_net[eval_idx], extra=f"{error}  ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
