"""Diagnostic: DQS with its diffusion sampler replaced by the exact Boltzmann policy (the oracle), and a
shadow score network trained beside it and measured against that policy. 1-D actions only.

    python docs/scripts/oracle_shadow.py --env-id InvertedPendulum-v4 --no-cuda --learning-starts 5000 \
        --total-timesteps 15000 --eval-every 2500 --eval-episodes 5 --num-mc-samples 16 --num-diffusion-steps 20 --shadow

The oracle acts, evaluates and backs up with samples of exp(Qmin(s, a) / T) on the box [-1, 1] (self-
normalised importance sampling over one uniform proposal in each of --oracle-grid equal cells); everything
else is dqs.py's: the twin critics and their update, the backup without an entropy term (T: --temperature, 0.05 when
unset, as the diagnosis ran; dqs.py's rule that tracks T is not used here). It is the policy
that DQS's score network is meant to become. With --shadow, dqs.py's score network is trained exactly as
dqs.py trains it (dqs.score_matching_loss on the oracle's critic and replay data), and every --shadow-every
steps its sampler's executed actions tanh(x) at 64 batch states are compared with exp(Qmin/T) on a 401-point
grid: Wasserstein-1 distance `w1` (0 exact, 2 the box's width), saturated fraction (|a| > 0.99), E[Qmin]
shortfall, mean error, standard deviations, and Qmin's spread over the box (`shadow/*` in TensorBoard).
"""
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import dqs  # noqa: E402


@dataclass
class Args(dqs.Args):
    exp_name: str = "oracle"
    """the name of this experiment"""
    oracle_grid: int = 32
    """number of stratified uniform proposals per state for the exact policy"""
    shadow: bool = False
    """train dqs.py's score network beside the oracle and report how far its samples are from exp(Qmin/T)"""
    shadow_every: int = 500
    """report the shadow score network's fidelity every this many steps"""
    shadow_num_diffusion_steps: int | None = None
    """N of the sampler used for the shadow's fidelity (default: --num-diffusion-steps)"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    dqs.check_args(args)
    dqs.check_env(args.env_id)
    run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
    writer = SummaryWriter(run_dir)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    envs = dqs.gym.vector.SyncVectorEnv([dqs.make_env(args.env_id, args.seed)], autoreset_mode=dqs.gym.vector.AutoresetMode.NEXT_STEP)
    obs_dim, act_dim = int(np.prod(envs.single_observation_space.shape)), int(np.prod(envs.single_action_space.shape))
    if act_dim != 1:
        dqs.fail(f"the oracle samples exp(Q/T) on a grid and needs a 1-D action space; {args.env_id} has {act_dim}")
    low, high = envs.single_action_space.low, envs.single_action_space.high
    qf1, qf2, qf1_target, qf2_target = (dqs.SoftQNetwork(obs_dim, act_dim).to(device) for _ in range(4))
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr)
    score_net = dqs.ScoreNetwork(obs_dim, act_dim).to(device)
    score_optimizer = torch.optim.Adam(score_net.parameters(), lr=args.score_lr)
    temperature = torch.tensor(0.05 if args.temperature is None else args.temperature, device=device)  # the oracle's T is fixed

    def q_min(obs, actions):
        return torch.min(qf1(obs, actions), qf2(obs, actions))

    @torch.no_grad()
    def oracle(obs):
        """a ~ exp(Qmin(s, a) / T) on [-1, 1]: one uniform proposal per cell, then a softmax(Q / T) draw."""
        batch, cells = obs.shape[0], args.oracle_grid
        proposals = (-1 + (torch.arange(cells, device=device) + torch.rand(batch, cells, device=device)) * (2 / cells)).unsqueeze(-1)
        pick = torch.distributions.Categorical(logits=q_min(obs.unsqueeze(1), proposals) / temperature).sample()
        return proposals[torch.arange(batch, device=device), pick]

    @torch.no_grad()
    def shadow_fidelity(obs, samples_per_state: int = 64, grid_points: int = 401):
        states, m = obs.shape[0], samples_per_state
        num_steps = args.shadow_num_diffusion_steps or args.num_diffusion_steps
        x = dqs.sample_actions(score_net.condition(obs.repeat_interleave(m, 0), temperature), (states * m, 1), num_steps,
                               dqs.Schedule(args.sigma_min, args.sigma_max), device=device)
        a = torch.tanh(x).reshape(states, m)
        grid = torch.linspace(-1, 1, grid_points, device=device)
        q_grid = q_min(obs.unsqueeze(1), grid.reshape(1, -1, 1))  # (S, grid)
        p = torch.softmax(q_grid / temperature, 1)  # the exact policy on the grid
        w1 = (p.cumsum(1) - (a.unsqueeze(-1) <= grid).float().mean(1)).abs().mean(1) * 2.0  # integral of |F - G|
        mean_exact = (p * grid).sum(1)
        return {"w1": w1.mean(), "q_shortfall": ((p * q_grid).sum(1) - q_min(obs.unsqueeze(1), a.unsqueeze(-1)).mean(1)).mean(),
                "saturated": (a.abs() > 0.99).float().mean(), "mean_error": (a.mean(1) - mean_exact).abs().mean(),
                "std_sampled": a.std(1).mean(), "std_exact": (p * (grid - mean_exact[:, None]) ** 2).sum(1).sqrt().mean(),
                "q_spread": (q_grid.max(1).values - q_grid.min(1).values).mean()}

    rb = dqs.ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    obs, _ = envs.reset(seed=args.seed)
    autoreset = np.zeros(1, dtype=bool)
    eval_returns = None
    for global_step in range(args.total_timesteps):
        if global_step < args.learning_starts:
            actions = np.random.uniform(-1.0, 1.0, (1, act_dim)).astype(np.float32)
        else:
            actions = oracle(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
        next_obs, rewards, terminations, truncations, infos = envs.step(low + 0.5 * (actions + 1.0) * (high - low))
        if "episode" in infos:
            for i in np.flatnonzero(infos["_episode"]):
                writer.add_scalar("charts/episodic_return", float(infos["episode"]["r"][i]), global_step)
        rb.add(obs, next_obs, actions, rewards, terminations, keep=~autoreset)
        autoreset, obs = np.logical_or(terminations, truncations), next_obs

        if rb.size >= max(args.learning_starts, args.batch_size):
            b_obs, b_actions, b_next_obs, b_rewards, b_terminations = rb.sample(args.batch_size)
            with torch.no_grad():  # dqs.py's backup, with the oracle's a'
                next_actions = oracle(b_next_obs)
                next_q = torch.min(qf1_target(b_next_obs, next_actions), qf2_target(b_next_obs, next_actions))
                y = b_rewards + (1 - b_terminations) * args.gamma * next_q
            q_loss = F.mse_loss(qf1(b_obs, b_actions), y) + F.mse_loss(qf2(b_obs, b_actions), y)
            q_optimizer.zero_grad()
            q_loss.backward()
            q_optimizer.step()
            if args.shadow:  # dqs.py's score step, on the critic just updated
                x_0 = torch.atanh(b_actions.clamp(-1 + 1e-6, 1 - 1e-6)) if args.exact_bounds else b_actions
                score_loss = dqs.score_matching_loss(
                    score_net, lambda x: dqs.log_target_times_T(lambda a: q_min(b_obs.unsqueeze(1), a), x, temperature, args.exact_bounds), b_obs, x_0, temperature,
                    args.num_mc_samples, dqs.Schedule(args.sigma_min, args.sigma_max), form=args.score_target, chunk_size=args.mc_chunk_size)
                score_optimizer.zero_grad()
                score_loss.backward()
                score_optimizer.step()
            dqs.soft_update(qf1_target, qf1, args.tau)
            dqs.soft_update(qf2_target, qf2, args.tau)
            if args.shadow and global_step % args.shadow_every == 0:
                fidelity = {k: float(v) for k, v in shadow_fidelity(b_obs[:64]).items()}
                for k, v in fidelity.items():
                    writer.add_scalar(f"shadow/{k}", v, global_step)
                print(f"shadow step {global_step}: " + " ".join(f"{k} {v:.3f}" for k, v in fidelity.items()), flush=True)

        if (global_step + 1) % args.eval_every == 0 or global_step + 1 == args.total_timesteps:
            eval_returns = dqs.evaluate(oracle, args.env_id, args.eval_episodes, args.seed + 10_000, device)
            writer.add_scalar("eval/episodic_return", eval_returns.mean(), global_step + 1)
            print(f"oracle step {global_step + 1}: eval return {eval_returns.mean():.1f}", flush=True)
    if args.save_model:  # the critics, for docs/scripts/score_lag.py
        torch.save({"algo": "dqs-oracle", "step": args.total_timesteps, "qf1": qf1.state_dict(), "qf2": qf2.state_dict()},
                   os.path.join(run_dir, f"{args.exp_name}.pt"))
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"algo": "dqs-oracle", "env_id": args.env_id, "seed": args.seed, "global_step": args.total_timesteps,
                   "eval_return_mean": float(eval_returns.mean()), "args": asdict(args)}, f, indent=2)
    envs.close()
    writer.close()
