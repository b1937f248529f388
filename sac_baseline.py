"""Soft Actor-Critic (SAC), the baseline that Diffusion Q-Sampling is measured against.

    python sac_baseline.py --env-id Humanoid-v4
    python sac_baseline.py --env-id InvertedPendulum-v4 --total-timesteps 30000 --no-cuda

One file, CleanRL style, with the same skeleton as dqs.py: `diff sac_baseline.py dqs.py` shows what
DQS changes (the actor) and little else. Defaults are CleanRL's `sac_continuous_action.py` defaults
(Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905), so our
numbers can be set beside the CleanRL benchmark. Policies act in the normalised box [-1, 1]^d; the
env's bounds are applied only when stepping the env.
"""
import json
import os
import signal
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from rl_common import (CudaGraphed, ExperimentArgs, ReplayBuffer, SpeedArgs, all_finite, check_common_args, check_env, evaluate,
                       fail, load_checkpoint, make_env, parse_args, save_checkpoint, soft_update, start_run)

ALGO = "sac"


@dataclass
class AlgorithmArgs:
    """SAC as in CleanRL's sac_continuous_action.py, with its defaults"""

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
    learning_starts: int = 5_000
    """timestep to start learning (uniform-random actions before it)"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer"""
    policy_lr: float = 3e-4
    """the learning rate of the policy network optimizer"""
    policy_frequency: int = 2
    """the frequency of training policy (delayed)"""
    alpha: float = 0.2
    """entropy regularization coefficient (initial value when autotuned)"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""


@dataclass
class Args(SpeedArgs, AlgorithmArgs, ExperimentArgs):  # --help: one section per class, this order reversed
    exp_name: str = os.path.basename(__file__)[: -len(".py")]


def check_args(args: Args):
    check_common_args(args)


# ---------------------------------------------------------------------------------------------
# Critic: Q(s, a), two hidden layers of 256.
class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def forward(self, obs, actions):
        x = F.relu(self.fc1(torch.cat([obs, actions], -1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Actor: a tanh-squashed diagonal Gaussian, pi(a|s) = tanh(N(mu(s), sigma(s)^2)).
LOG_STD_MAX = 2
LOG_STD_MIN = -5


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc_mean = nn.Linear(hidden, act_dim)
        self.fc_logstd = nn.Linear(hidden, act_dim)

    def forward(self, obs):
        x = F.relu(self.fc2(F.relu(self.fc1(obs))))
        mean = self.fc_mean(x)
        log_std = torch.tanh(self.fc_logstd(x))  # squashed into [LOG_STD_MIN, LOG_STD_MAX]
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return mean, log_std

    def get_action(self, obs):
        """Returns a sampled action in [-1, 1]^d, its log-probability and the deterministic tanh(mean)."""
        mean, log_std = self(obs)
        normal = torch.distributions.Normal(mean, log_std.exp(), validate_args=False)  # no check: no host sync
        x_t = normal.rsample()  # reparameterisation trick
        y_t = torch.tanh(x_t)
        # change of variables for the tanh squashing; 1e-6 keeps the log finite at |y| = 1
        log_prob = (normal.log_prob(x_t) - torch.log(1 - y_t.pow(2) + 1e-6)).sum(-1)
        return y_t, log_prob, torch.tanh(mean)


if __name__ == "__main__":
    args = parse_args(Args)
    check_args(args)
    check_env(args.env_id)
    run_dir, writer, device = start_run(args)

    # env setup: one env in a vector env, NEXT_STEP autoreset (Gymnasium 1.x default)
    envs = gym.vector.SyncVectorEnv([make_env(args.env_id, args.seed)], autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))
    low, high = envs.single_action_space.low, envs.single_action_space.high

    actor = Actor(obs_dim, act_dim).to(device)
    qf1 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr, capturable=args.cudagraphs)
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=args.policy_lr, capturable=args.cudagraphs)
    if args.compile:  # in place: the parameters and the checkpoint's keys stay those of the eager modules
        for m in (actor, qf1, qf2, qf1_target, qf2_target):
            m.compile()

    # Automatic entropy tuning: target entropy -|A| (Haarnoja et al. 2018b)
    target_entropy = -float(act_dim)
    log_alpha = torch.full((1,), float(np.log(args.alpha)), device=device, requires_grad=True)
    a_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr, capturable=args.cudagraphs)
    modules = {"actor": actor, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target,
               "q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer, "log_alpha": log_alpha,
               "a_optimizer": a_optimizer}

    def act(obs):
        return actor.get_action(obs)[0]

    def act_eval(obs):
        return actor.get_action(obs)[2]

    def update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations):
        with torch.no_grad():
            next_state_actions, next_state_log_pi, _ = actor.get_action(b_next_obs)
            qf1_next_target = qf1_target(b_next_obs, next_state_actions)
            qf2_next_target = qf2_target(b_next_obs, next_state_actions)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - log_alpha.exp() * next_state_log_pi
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

    def update_actor(b_obs):
        pi, log_pi, _ = actor.get_action(b_obs)
        min_qf_pi = torch.min(qf1(b_obs, pi), qf2(b_obs, pi))
        actor_loss = (log_alpha.exp().detach() * log_pi - min_qf_pi).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        losses = {"actor_loss": actor_loss, "alpha": log_alpha.exp()}
        if args.autotune:
            with torch.no_grad():
                _, log_pi, _ = actor.get_action(b_obs)
            alpha_loss = (-log_alpha.exp() * (log_pi + target_entropy)).mean()
            a_optimizer.zero_grad()
            alpha_loss.backward()
            a_optimizer.step()
            losses["alpha_loss"] = alpha_loss
        return losses

    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    start_step, num_updates = load_checkpoint(args.resume, ALGO, args, modules, device) if args.resume else (0, 0)
    if args.cudagraphs:  # captured after --resume has loaded the optimizers' state
        act, act_eval, update_critic, update_actor = (CudaGraphed(f) for f in (act, act_eval, update_critic, update_actor))
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
                    actions = act(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

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
                losses = update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations)
                if global_step % args.policy_frequency == 0:  # TD3 delayed update support
                    for _ in range(args.policy_frequency):  # compensate for the delay with `policy_frequency` updates
                        actor_losses = update_actor(b_obs)
                    losses = {**losses, **actor_losses}
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
