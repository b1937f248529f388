"""DQS against SAC on a 2-D continuous bandit whose Boltzmann policy exp(r(a) / T) is known exactly.

    python toy_bandit.py                      # train both, print the table, save the picture and numbers
    python toy_bandit.py --true-reward        # both use the true reward instead of a learned critic
    python toy_bandit.py --exact-bounds       # DQS diffuses pre-tanh actions (see dqs.py)
    python toy_bandit.py --sweep              # DQS's distance to the exact policy over N, K and sigma_max

One state, actions in [-1, 1]^2, one-step returns: the critic regresses the reward (no bootstrap).
DQS trains dqs.py's ScoreNetwork on dqs.py's Monte-Carlo score target of the twin critics and acts
with dqs.py's reverse-SDE sampler; SAC trains sac_baseline.py's tanh-Gaussian Actor with alpha = T,
which minimises the reverse KL to exp(r / T) over Gaussians: one bump, which can sit on one mode or
spread over several and the valleys between them, but never hold several modes. Both learn from
their own samples plus uniform warm-up actions. `--true-reward` replaces the critic by r itself
(in DQS's score target and SAC's actor loss), which separates sampler error from critic error.

The exact policy is integrated on a fine grid of the box. Distances are measured on executed actions:
total variation between 20 x 20 histograms, and the mass of each mode (every action counted at its
nearest mode centre). With the paper's default (no --exact-bounds), the sampler targets exp(r(x) / T)
for the *unsquashed* x and executes tanh(x), which moves every mode towards the centre; the table's
"target" row is that pushforward, computed exactly, so its TV is the bias of the default target alone.
"""
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
import tyro
from tqdm import tqdm

from dqs import (Schedule, ScoreNetwork, SoftQNetwork, critic_score, fail, log_target_times_T, mc_score_target, sample_actions,
                 score_matching_loss, twin_log_target)
from sac_baseline import Actor


@dataclass
class Args:
    reward: str = "four_modes"
    """the reward landscape: four_modes, two_modes or ring (see REWARDS)"""
    temperature: float = 0.1
    """temperature T of the target policy exp(r / T); SAC's fixed entropy coefficient alpha"""
    true_reward: bool = False
    """diagnostic: DQS's score target and SAC's actor loss use the true reward instead of the learned critic"""
    num_mc_samples: int = 256
    """K, perturbed actions in the Monte-Carlo score target (dqs.py: 1000; 256 keeps the default run under 3 minutes)"""
    num_diffusion_steps: int = 50
    """N, Euler-Maruyama steps of the reverse SDE"""
    sigma_min: float = 1e-5
    """smallest noise scale of the variance-exploding SDE"""
    sigma_max: float = 1.0
    """largest noise scale of the variance-exploding SDE (the paper's 1)"""
    exact_bounds: bool = True
    """DQS diffuses pre-tanh actions with the tanh log-Jacobian in the energy, as dqs.py's flag (dqs.py's default, not the paper's)"""
    acting_score: Literal["critic", "network"] = "critic"
    """what drives DQS's sampler, as dqs.py's flag: 'critic' (dqs.py's default, not the paper's) or 'network' (the paper's)"""
    acting_mc_samples: int = 256
    """K of the critic-driven sampler, as dqs.py's flag (256 as --num-mc-samples: docs/results.md#the-toy-bandit-four-modes)"""
    clean_score_until: float = 0.6
    """the critic-driven sampler uses grad Q / T for t up to this, as dqs.py's flag"""
    acting_estimate: Literal["grad", "blend", "cv", "refit"] = "refit"
    """the critic-driven sampler's estimate above the switch, as dqs.py's flag"""
    iterations: int = 5000
    """gradient steps of each method (one critic step and one score or actor step each)"""
    batch_size: int = 128
    """minibatch of (action, reward) pairs per gradient step"""
    warmup: int = 2000
    """uniform-random actions in the data before training starts"""
    collect: int = 64
    """fresh actions of the current policy added to the data every --collect-every iterations"""
    collect_every: int = 16
    """how often the policy's own samples are added to the data"""
    critic_hidden: int = 32
    """hidden width of the toy's twin critics (dqs.py's SoftQNetwork with 32 instead of 256: K critic calls per row are the toy's main cost)"""
    q_lr: float = 1e-3
    """learning rate of the critics"""
    score_lr: float = 3e-4
    """learning rate of DQS's score network"""
    policy_lr: float = 3e-4
    """learning rate of SAC's actor"""
    num_samples: int = 10_000
    """executed actions drawn from each trained policy for the numbers and the picture"""
    seed: int = 1
    """seed"""
    threads: int = 2
    """torch CPU threads (2 runs the defaults in under 3 minutes on a 2-core CPU; the tensors are small, so more add little)"""
    sweep: bool = False
    """instead of one comparison: DQS's fidelity over N, K and sigma_max (with the true reward), as markdown"""
    sweep_out: str = "docs/data/toy_sweep.md"
    """where --sweep writes its table"""
    out: str = "runs/toy_bandit/toy_bandit.png"
    """path of the picture; the numbers go next to it as .json"""
    save_docs: bool = False
    """also copy the picture and its numbers to docs/img/toy_bandit.png and docs/data/toy_bandit.json"""


# ---------------------------------------------------------------------------------------------
# Rewards: a smooth maximum of parabolas, one per mode, with peak heights h_k at centres c_k,
#   r(a) = tau log sum_k exp(h_k / tau - |a - c_k|^2 / (2 s^2)),   tau = 0.1, s = 0.15.
# At T = tau, exp(r / T) is exactly a mixture of Gaussians N(c_k, s^2 I) with weights ~ exp(h_k / tau)
# (cut to the box, which loses almost nothing: the centres are 4 s from the edges). Other T sharpen
# or flatten it. r is defined on all of R^2 and exp(r / T) is integrable there, which the paper's
# default target needs: it queries the reward at unsquashed actions.
REWARDS = {
    "four_modes": dict(centers=[(-0.35, -0.35), (0.35, 0.35), (-0.35, 0.35), (0.35, -0.35)], heights=[1.0, 0.95, 0.9, 0.85]),
    "two_modes": dict(centers=[(-0.35, 0.0), (0.35, 0.0)], heights=[1.0, 0.95]),
    "ring": dict(centers=[(0.5 * math.cos(math.pi * k / 3), 0.5 * math.sin(math.pi * k / 3)) for k in range(6)],
                 heights=[1.0, 0.97, 0.94, 0.91, 0.88, 0.85]),
}
TAU, MODE_STD = 0.1, 0.15


def make_reward(name: str):
    """Returns reward_fn(actions (..., 2)) -> (...) and the mode centres (M, 2), float64."""
    centers = torch.tensor(REWARDS[name]["centers"], dtype=torch.float64)
    heights = torch.tensor(REWARDS[name]["heights"], dtype=torch.float64)

    def reward_fn(a):
        d2 = (a.unsqueeze(-2) - centers.to(a)).pow(2).sum(-1)  # squared distance to every centre
        return TAU * torch.logsumexp(heights.to(a) / TAU - d2 / (2 * MODE_STD**2), -1)

    return reward_fn, centers


# ---------------------------------------------------------------------------------------------
# The exact policy, and the two distances reported
FINE, BINS = 400, 20  # 400 x 400 integration cells of the box, 20 x 20 histogram bins (20 x 20 cells each)


def box_grid(cells: int, half_width: float = 1.0):
    """Centres of a cells x cells grid of [-half_width, half_width]^2, shape (cells^2, 2), float64."""
    c = ((torch.arange(cells, dtype=torch.float64) + 0.5) / cells * 2 - 1) * half_width
    return torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)


def exact_policy(reward_fn, temperature: float):
    """The Boltzmann policy on the box, midpoint rule: cell centres a_j and masses p_j ~ exp(r(a_j) / T)."""
    a = box_grid(FINE)
    return a, torch.softmax(reward_fn(a) / temperature, 0)


def default_target(reward_fn, temperature: float, half_width: float = 4.0, cells: int = 1600):
    """What the paper's default samples when its score is exact: x ~ exp(r(x) / T) on R^2 (here a
    [-4, 4]^2 grid, which holds all but a negligible tail of the bowl), executed as a = tanh(x)."""
    x = box_grid(cells, half_width)
    return torch.tanh(x), torch.softmax(reward_fn(x) / temperature, 0)


def bin_masses(actions, weights=None):
    """Histogram of actions in [-1, 1]^2 on BINS x BINS bins, normalised by the total weight; weights
    default to 1. Non-finite actions (a diverged sampler) fall in no bin, so their mass counts as error."""
    w = torch.ones(len(actions), dtype=torch.float64) if weights is None else weights
    finite = torch.isfinite(actions).all(1)
    idx = ((actions[finite].double().clamp(-1, 1) + 1) / 2 * BINS).long().clamp(0, BINS - 1)
    return torch.zeros(BINS * BINS, dtype=torch.float64).index_add_(0, idx[:, 0] * BINS + idx[:, 1], w[finite]) / w.sum()


def mode_masses(actions, centers, weights=None):
    """Mass at each mode: every action counts for its nearest mode centre (non-finite ones for none)."""
    w = torch.ones(len(actions), dtype=torch.float64) if weights is None else weights
    finite = torch.isfinite(actions).all(1)
    nearest = torch.cdist(actions[finite].double(), centers).argmin(1)
    return torch.zeros(len(centers), dtype=torch.float64).index_add_(0, nearest, w[finite]) / w.sum()


def distances(actions, exact, centers, weights=None) -> dict:
    """TV between the 20 x 20 histograms (bin mass against exact bin mass) and the per-mode masses.
    `exact` is (grid, p) from exact_policy; `weights` weighs `actions` (for the exact target rows)."""
    grid, p = exact
    exact_mass = mode_masses(grid, centers, p)
    mass = mode_masses(actions, centers, weights)
    bins = bin_masses(actions, weights)
    missing = max(0.0, 1.0 - bins.sum().item())  # non-finite samples' mass: one more bin, empty in the exact policy
    tv = 0.5 * ((bins - bin_masses(grid, p)).abs().sum().item() + missing)
    return {"tv": tv, "non_finite": missing, "mode_mass": mass.tolist(), "exact_mode_mass": exact_mass.tolist(),
            "max_mode_mass_error": (mass - exact_mass).abs().max().item()}


def target_distances(reward_fn, temperature: float, exact, centers) -> dict:
    """distances() of the paper's default target itself: its bias, free of sampling noise."""
    actions, p = default_target(reward_fn, temperature)
    return distances(actions, exact, centers, weights=p)


def exact_samples(exact, n: int, seed: int = 0):
    """n independent draws from the exact policy (a cell centre each): a perfect sampler's score at n
    samples is the noise floor of the TV, which is not zero for a finite n."""
    grid, p = exact
    g = torch.Generator().manual_seed(seed)
    return grid[torch.multinomial(p, n, replacement=True, generator=g)]


def estimator_driven_actions(reward_fn, n: int, num_mc_samples: int, num_diffusion_steps: int, temperature: float,
                             schedule: Schedule = Schedule(), seed: int = 0):
    """Executed actions tanh(x) of dqs.py's sampler driven by dqs.py's Monte-Carlo score target of the
    true reward itself (no critic, no network): what DQS samples if its score network fits its target."""
    def score(x, t):
        return mc_score_target(lambda a: reward_fn(a).to(a.dtype), x, t.expand(n), temperature, num_mc_samples, schedule)

    torch.manual_seed(seed)
    return torch.tanh(sample_actions(score, (n, 2), num_diffusion_steps, schedule))


# ---------------------------------------------------------------------------------------------
# DQS and SAC on the bandit. One state: obs is a constant zero of dim 1.
class Data:
    """The (action, reward) pairs seen so far: uniform warm-up actions, then the policy's own samples."""

    def __init__(self, capacity: int, reward_fn, warmup: int):
        self.actions, self.rewards, self.size, self.reward_fn = torch.zeros(capacity, 2), torch.zeros(capacity), 0, reward_fn
        self.add(torch.rand(warmup, 2) * 2 - 1)

    def add(self, actions):
        n = len(actions)
        self.actions[self.size : self.size + n] = actions
        self.rewards[self.size : self.size + n] = self.reward_fn(actions).float()
        self.size += n

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,))
        return self.actions[idx], self.rewards[idx]


def make_critics(args: Args):
    qf1, qf2 = SoftQNetwork(1, 2, args.critic_hidden), SoftQNetwork(1, 2, args.critic_hidden)
    return qf1, qf2, torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr)


def critic_step(qf1, qf2, q_optimizer, obs, actions, rewards):
    """One-step returns: each critic regresses the reward, y = r."""
    loss = F.mse_loss(qf1(obs, actions), rewards) + F.mse_loss(qf2(obs, actions), rewards)
    q_optimizer.zero_grad()
    loss.backward()
    q_optimizer.step()


def train_dqs(args: Args, reward_fn, progress: bool = True):
    torch.manual_seed(args.seed)
    T = args.temperature
    score_net = ScoreNetwork(1, 2)
    score_optimizer = torch.optim.Adam(score_net.parameters(), lr=args.score_lr)
    qf1, qf2, q_optimizer = make_critics(args)
    data = Data(args.warmup + (args.iterations // args.collect_every + 1) * args.collect, reward_fn, args.warmup)
    obs = torch.zeros(args.batch_size, 1)

    schedule = Schedule(args.sigma_min, args.sigma_max)

    def log_target_at(o):  # as in dqs.py: T log p(x) up to a constant, at the states o (B, 1, 1)
        if args.true_reward:
            return lambda x: log_target_times_T(lambda a: reward_fn(a).to(a.dtype), x, T, args.exact_bounds)
        return twin_log_target(qf1, qf2, o, T, args.exact_bounds)

    def act(n: int, num_diffusion_steps: int):
        if args.acting_score == "critic":  # as dqs.py acts by default: the critic's own estimate drives the sampler
            score = critic_score(log_target_at(torch.zeros(n, 1, 1)), T, args.acting_mc_samples, args.clean_score_until, schedule,
                                 form=args.acting_estimate)
        else:
            score = score_net.condition(torch.zeros(n, 1), T)
        return torch.tanh(sample_actions(score, (n, 2), num_diffusion_steps, schedule))

    for it in tqdm(range(args.iterations), desc="dqs", disable=not progress, mininterval=1.0, dynamic_ncols=True):
        if it % args.collect_every == 0:
            data.add(act(args.collect, args.num_diffusion_steps))
        b_actions, b_rewards = data.sample(args.batch_size)
        if not args.true_reward:
            critic_step(qf1, qf2, q_optimizer, obs, b_actions, b_rewards)

        # score step, as in dqs.py: denoising score matching of noised executed actions against S_K
        x_0 = torch.atanh(b_actions.clamp(-1 + 1e-6, 1 - 1e-6)) if args.exact_bounds else b_actions
        score_loss = score_matching_loss(score_net, log_target_at(obs.unsqueeze(1)), obs, x_0, T, args.num_mc_samples, schedule)
        score_optimizer.zero_grad()
        score_loss.backward()
        score_optimizer.step()
    act.critics, act.score_net = (qf1, qf2), score_net  # for docs/scripts/toy_acting.py's other samplers
    return act


def train_sac(args: Args, reward_fn, progress: bool = True):
    torch.manual_seed(args.seed)
    actor = Actor(1, 2)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    qf1, qf2, q_optimizer = make_critics(args)
    data = Data(args.warmup + (args.iterations // args.collect_every + 1) * args.collect, reward_fn, args.warmup)
    obs = torch.zeros(args.batch_size, 1)

    def act(n: int):
        with torch.no_grad():
            return actor.get_action(torch.zeros(n, 1))[0]

    for it in tqdm(range(args.iterations), desc="sac", disable=not progress, mininterval=1.0, dynamic_ncols=True):
        if it % args.collect_every == 0:
            data.add(act(args.collect))
        b_actions, b_rewards = data.sample(args.batch_size)
        if not args.true_reward:
            critic_step(qf1, qf2, q_optimizer, obs, b_actions, b_rewards)
        pi, log_pi, _ = actor.get_action(obs)
        q_pi = reward_fn(pi).to(pi.dtype) if args.true_reward else torch.min(qf1(obs, pi), qf2(obs, pi))
        actor_loss = (args.temperature * log_pi - q_pi).mean()  # alpha = T, fixed
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
    return act


def run(args: Args, reward_fn, progress: bool = True) -> dict:
    """Trains DQS and SAC on any reward_fn(actions (n, 2) in [-1, 1]^2) -> rewards (n,) and returns
    {"dqs": (n, 2), "sac": (n, 2)}, executed actions of each trained policy, n = args.num_samples.
    (Without --exact-bounds and with --true-reward, DQS also calls reward_fn outside the box.)"""
    dqs_act = train_dqs(args, reward_fn, progress)
    sac_act = train_sac(args, reward_fn, progress)
    torch.manual_seed(args.seed + 1)
    return {"dqs": dqs_act(args.num_samples, args.num_diffusion_steps), "sac": sac_act(args.num_samples)}


# ---------------------------------------------------------------------------------------------
def report_table(args: Args, rows: dict) -> str:
    """rows: name -> distances(); a fixed-width table of TV, per-mode masses and the largest mass error."""
    exact = next(iter(rows.values()))["exact_mode_mass"]
    masses = "mode masses"
    lines = [f"reward {args.reward}, T = {args.temperature:g}, {'true reward' if args.true_reward else 'learned critic'}, "
             f"K = {args.num_mc_samples}, N = {args.num_diffusion_steps}, sigma_max = {args.sigma_max:g}, "
             f"exact_bounds = {args.exact_bounds}, {args.iterations} iterations, n = {args.num_samples}",
             f"{'':8}{'TV':>6}  {masses:<{7 * len(exact)}}  max mass error",
             f"{'exact':8}{0:6.3f}  {''.join(f'{m:7.3f}' for m in exact)}  {0:.3f}"]
    for name, d in rows.items():
        lines.append(f"{name:8}{d['tv']:6.3f}  {''.join(f'{m:7.3f}' for m in d['mode_mass'])}  {d['max_mode_mass_error']:.3f}")
    return "\n".join(lines)


def plot(path: str, reward_fn, centers, temperature: float, samples: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = box_grid(200)
    r = reward_fn(a).reshape(200, 200)
    p = torch.softmax((r / temperature).flatten(), 0).reshape(200, 200)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.3))
    for ax, (title, z) in zip(axes[:2], [("reward r(a)", r), (f"exact policy exp(r/T), T = {temperature:g}", p)]):
        ax.imshow(z.T.numpy(), origin="lower", extent=(-1, 1, -1, 1), cmap="viridis")
        ax.set_title(title)
    for ax, (name, s) in zip(axes[2:], samples.items()):
        s = s[:4000].numpy()
        ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.3, color="C0" if name.startswith("dqs") else "C3", rasterized=True)
        ax.set_title(f"{name.upper()} samples ({len(s)})")
    for ax in axes:
        ax.plot(centers[:, 0].numpy(), centers[:, 1].numpy(), "k+", ms=9)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Sweep: one score network per (sigma_max, K), trained on the true reward, sampled at every N.
SWEEP_N, SWEEP_K, SWEEP_SIGMA_MAX = (10, 20, 50, 100, 500), (16, 64, 256, 1000), (1.0, 3.0)


def sweep(args: Args, reward_fn, centers, progress: bool = True):
    exact = exact_policy(reward_fn, args.temperature)
    floor = distances(exact_samples(exact, args.num_samples, args.seed), exact, centers)
    target = None if args.exact_bounds else target_distances(reward_fn, args.temperature, exact, centers)
    results = []
    jobs = [(s, k) for s in SWEEP_SIGMA_MAX for k in SWEEP_K]
    for sigma_max, k in tqdm(jobs, desc="sweep", disable=not progress, dynamic_ncols=True):
        cfg = replace(args, sigma_max=sigma_max, num_mc_samples=k, true_reward=True)
        act = train_dqs(cfg, reward_fn, progress=False)
        for n in SWEEP_N:
            torch.manual_seed(args.seed + 1)
            d = distances(act(args.num_samples, n), exact, centers)
            results.append({"sigma_max": sigma_max, "K": k, "N": n, **d})
    return results, floor, target


def sweep_markdown(args: Args, command: str, results, floor, target, wall_s: float) -> str:
    se = [math.sqrt(m * (1 - m) / args.num_samples) for m in floor["exact_mode_mass"]]
    lines = [f"`{command}`", "",
             f"DQS on the toy bandit (`{args.reward}`, T = {args.temperature:g}, exact mode masses "
             f"{', '.join(f'{m:.3f}' for m in floor['exact_mode_mass'])}) with the **true reward** in the score target, "
             f"so only the sampler's error shows (score network training, K, N, sigma_max), not the critic's. "
             f"exact_bounds = {args.exact_bounds}, {args.iterations} iterations, batch {args.batch_size}, seed {args.seed}; "
             f"one score network per (sigma_max, K), trained with N = {args.num_diffusion_steps} for its own data "
             f"collection, then sampled n = {args.num_samples} times at each N. {wall_s / 60:.0f} min on a 2-core CPU.", "",
             f"Each cell: TV to the exact policy (20 x 20 bins) / largest per-mode mass error. Noise floors at this n: "
             f"TV of n exact samples {floor['tv']:.3f}; standard error of a mode mass "
             f"{min(se):.4f} to {max(se):.4f}."]
    if target is not None:
        lines.append(f"Bias of the paper's default target alone (exact x ~ exp(r(x)/T) on R^2, executed as tanh(x), "
                     f"no sampling noise): TV {target['tv']:.3f}, largest mode mass error {target['max_mode_mass_error']:.3f}.")
    lines += ["", "| sigma_max | K | " + " | ".join(f"N = {n}" for n in SWEEP_N) + " |", "|---|---|" + "---|" * len(SWEEP_N)]
    for sigma_max in SWEEP_SIGMA_MAX:
        for k in SWEEP_K:
            cells = [f"{r['tv']:.3f} / {r['max_mode_mass_error']:.3f}" for r in results
                     if r["sigma_max"] == sigma_max and r["K"] == k]
            lines.append(f"| {sigma_max:g} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
def check_args(args: Args):
    if not 0 <= args.clean_score_until <= 1:
        fail(f"--clean-score-until must be in [0, 1], got {args.clean_score_until}")
    if args.reward not in REWARDS:
        fail(f"unknown --reward {args.reward!r}; choose one of {', '.join(REWARDS)}")
    for name in ("temperature", "num_mc_samples", "num_diffusion_steps", "sigma_min", "iterations", "batch_size",
                 "collect", "collect_every", "critic_hidden", "acting_mc_samples", "num_samples", "threads", "q_lr", "score_lr", "policy_lr"):
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.warmup < 0:
        fail(f"--warmup must be non-negative, got {args.warmup}")
    if args.warmup == 0 and args.collect_every > args.iterations:
        fail("no data: --warmup is 0 and --collect-every exceeds --iterations")
    if args.sigma_max <= args.sigma_min:
        fail(f"--sigma-max ({args.sigma_max}) must be larger than --sigma-min ({args.sigma_min})")


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    torch.set_num_threads(args.threads)
    reward_fn, centers = make_reward(args.reward)
    start = time.time()
    command = "python " + " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])

    if args.sweep:
        os.makedirs(os.path.dirname(os.path.abspath(args.sweep_out)), exist_ok=True)
        results, floor, target = sweep(args, reward_fn, centers)
        text = sweep_markdown(args, command, results, floor, target, time.time() - start)
        print(text)
        with open(args.sweep_out, "w") as f:
            f.write(text)
        with open(os.path.splitext(args.sweep_out)[0] + ".json", "w") as f:
            json.dump({"command": command, "args": asdict(args), "floor": floor, "target": target, "results": results}, f, indent=1)
        print(f"saved {args.sweep_out}")
        sys.exit(0)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    samples = run(args, reward_fn)
    exact = exact_policy(reward_fn, args.temperature)
    rows = {name: distances(s, exact, centers) for name, s in samples.items()}
    if not args.exact_bounds:
        rows["target"] = target_distances(reward_fn, args.temperature, exact, centers)
    rows["n exact"] = distances(exact_samples(exact, args.num_samples, args.seed), exact, centers)
    table = report_table(args, rows)
    wall_s = time.time() - start
    print(table)
    print("target: the paper's default target tanh(x), x ~ exp(r(x)/T), exact (its bias); "
          "n exact: n draws of the exact policy (the noise floor)")
    plot(args.out, reward_fn, centers, args.temperature, samples)
    json_path = os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump({"command": command, "args": asdict(args), "wall_time_s": wall_s, **rows}, f, indent=1)
    if args.save_docs:
        for folder in ("img", "data"):
            os.makedirs(os.path.join("docs", folder), exist_ok=True)
        shutil.copyfile(args.out, os.path.join("docs", "img", "toy_bandit.png"))
        shutil.copyfile(json_path, os.path.join("docs", "data", "toy_bandit.json"))
    print(f"saved {args.out} and {json_path} ({wall_s:.0f} s)")
