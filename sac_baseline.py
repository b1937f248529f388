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

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):  # headless: render offscreen for --capture-video
    os.environ.setdefault("MUJOCO_GL", "egl")  # (set before MuJoCo and dm_control load)
ALGO = "sac"


@dataclass
class Args:
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
    """whether to save a checkpoint at every evaluation and at the end (`runs/{run_name}/{exp_name}.pt`)"""
    resume: str | None = None
    """path of a checkpoint written by --save-model to continue from"""
    eval_every: int = 50_000
    """evaluate the policy every this many env steps (and always at the end)"""
    eval_episodes: int = 10
    """number of episodes per evaluation, on a separate env with its own seed"""

    # Algorithm specific arguments: CleanRL's defaults
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

    # Speed (same results)
    compile: bool = False
    """speed: torch.compile the networks (forward and backward passes; optimizers stay eager)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """speed: torch.set_float32_matmul_precision; 'high' is TF32 on GPUs, 'medium' bf16 products on CPUs"""


def fail(message: str):
    """Bad input ends the run with one line naming the problem and a non-zero exit, not a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def check_args(args: Args):
    positive = ["total_timesteps", "buffer_size", "batch_size", "eval_every", "eval_episodes"]
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.learning_starts < 0:
        fail(f"--learning-starts must be non-negative, got {args.learning_starts}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size ({args.batch_size}) is larger than --buffer-size ({args.buffer_size})")


def gym_make(env_id: str, **kwargs):
    """gym.make for MuJoCo and DeepMind Control ids, with flat observations (DMC's come as a dict)."""
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
    except gym.error.Error as e:
        fail(f"cannot make env {env_id!r}: {e}")
    if not isinstance(env.action_space, gym.spaces.Box):
        fail(f"{env_id} has a {type(env.action_space).__name__} action space; only continuous (Box) actions are supported")
    env.close()


# ---------------------------------------------------------------------------------------------
# Replay buffer: preallocated tensors on the training device, so sampling a batch never leaves it.
class ReplayBuffer:
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


# ---------------------------------------------------------------------------------------------
# Critic: Q(s, a), two hidden layers of 256. The first layer is split into its state and action
# columns so that obs (B, 1, obs_dim) broadcasts against actions (B, K, act_dim): K actions share one
# state encoding instead of K copies of the observation.
class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_dim = obs_dim
        self.fc1 = nn.Linear(obs_dim + act_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def forward(self, obs, actions):
        w_s, w_a = self.fc1.weight[:, : self.obs_dim], self.fc1.weight[:, self.obs_dim :]
        x = F.relu(F.linear(obs, w_s) + F.linear(actions, w_a, self.fc1.bias))
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
        normal = torch.distributions.Normal(mean, log_std.exp())
        x_t = normal.rsample()  # reparameterisation trick
        y_t = torch.tanh(x_t)
        # change of variables for the tanh squashing; 1e-6 keeps the log finite at |y| = 1
        log_prob = (normal.log_prob(x_t) - torch.log(1 - y_t.pow(2) + 1e-6)).sum(-1)
        return y_t, log_prob, torch.tanh(mean)


# ---------------------------------------------------------------------------------------------
# Evaluation on its own env and seed, with the deterministic action tanh(mean).
def evaluate(act_fn, env_id: str, episodes: int, seed: int, device: torch.device, video: str | None = None) -> np.ndarray:
    """The returns of `episodes` episodes; with `video` (a path prefix), the first one is recorded as an mp4."""
    env = gym_make(env_id, render_mode="rgb_array" if video else None)
    if video:
        env = gym.wrappers.RecordVideo(env, os.path.dirname(video), name_prefix=os.path.basename(video),
                                       episode_trigger=lambda episode: episode == 0, disable_logger=True)
    low, high = env.action_space.low, env.action_space.high
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, episodic_return = False, 0.0
        while not done:
            with torch.no_grad():
                action = act_fn(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0].cpu().numpy()
            obs, reward, terminated, truncated, _ = env.step(low + 0.5 * (action + 1.0) * (high - low))
            episodic_return += float(reward)
            done = terminated or truncated
        returns.append(episodic_return)
    env.close()
    return np.array(returns)


# ---------------------------------------------------------------------------------------------
# Checkpoint: everything needed to resume, readable with torch.load(path, weights_only=True).
def all_finite(modules: dict) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules.values() if isinstance(m, nn.Module) for p in m.parameters())


def save_checkpoint(path: str, step: int, num_updates: int, args: Args, modules: dict) -> bool:
    if not all_finite(modules):
        return False  # diverged: keep the last good checkpoint rather than overwrite it with NaNs
    state = {"algo": ALGO, "env_id": args.env_id, "step": step, "num_updates": num_updates, "args": asdict(args)}
    state.update({name: m.state_dict() if hasattr(m, "state_dict") else m for name, m in modules.items()})
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a crash while writing never destroys the last good checkpoint
    return True


def load_checkpoint(path: str, args: Args, modules: dict, device: torch.device) -> tuple[int, int]:
    """Loads every module in place; returns the env step and the number of updates to continue from."""
    if not os.path.isfile(path):
        fail(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        fail(f"cannot read checkpoint {path!r}: {type(e).__name__}: {str(e).splitlines()[0]}")
    if not isinstance(state, dict) or state.get("algo") != ALGO:
        fail(f"checkpoint {path!r} was not written by {ALGO} (found {state.get('algo') if isinstance(state, dict) else type(state).__name__})")
    if state["env_id"] != args.env_id:
        fail(f"checkpoint {path!r} is for {state['env_id']}, not {args.env_id}")
    for name, m in modules.items():
        if isinstance(m, torch.Tensor):
            with torch.no_grad():
                m.copy_(state[name])
        else:
            m.load_state_dict(state[name])
    return int(state["step"]), int(state.get("num_updates", 0))


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    check_env(args.env_id)
    run_name = f"{args.env_id.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    # a resumed run keeps writing into the folder of its checkpoint
    run_dir = os.path.dirname(os.path.abspath(args.resume)) if args.resume else os.path.join("runs", run_name)
    run_name = os.path.basename(run_dir)
    if args.track:
        try:
            import wandb
        except ImportError:
            fail("--track needs Weights and Biases: pip install wandb")
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
    os.makedirs(run_dir, exist_ok=True)
    writer = SummaryWriter(run_dir)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{k}|{v}|" for k, v in vars(args).items()])))

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

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
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr)
    actor_optimizer = torch.optim.Adam(list(actor.parameters()), lr=args.policy_lr)
    if args.compile:  # in place: the parameters and the checkpoint's keys stay those of the eager modules
        for m in (actor, qf1, qf2, qf1_target, qf2_target):
            m.compile()

    # Automatic entropy tuning: target entropy -|A| (Haarnoja et al. 2018b)
    target_entropy = -float(act_dim)
    log_alpha = torch.full((1,), float(np.log(args.alpha)), device=device, requires_grad=True)
    a_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr)
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
    start_step, num_updates = load_checkpoint(args.resume, args, modules, device) if args.resume else (0, 0)
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
                    losses.update(actor_losses)
                num_updates += 1

                # update the target networks
                with torch.no_grad():
                    for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                        target_param.lerp_(param, args.tau)
                    for param, target_param in zip(qf2.parameters(), qf2_target.parameters()):
                        target_param.lerp_(param, args.tau)

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
                    save_checkpoint(ckpt_path, global_step + 1, num_updates, args, modules)
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
        if args.save_model and save_checkpoint(ckpt_path, global_step, num_updates, args, modules):
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
