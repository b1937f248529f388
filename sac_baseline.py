"""Soft Actor-Critic (SAC), the baseline that Diffusion Q-Sampling is measured against.

    python sac_baseline.py --env-id Humanoid-v4
    python sac_baseline.py --env-id InvertedPendulum-v4 --total-timesteps 30000 --no-cuda

One file, CleanRL style, with the same skeleton as dqs.py: `diff sac_baseline.py dqs.py` shows what
DQS changes (the actor) and little else. Defaults are CleanRL's `sac_continuous_action.py` defaults
(Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications", arXiv 1812.05905), so our
numbers can be set beside the CleanRL benchmark, with one exception: CleanRL's autotuned alpha starts at
1 whatever its --alpha says, ours at --alpha (0.2, the SAC paper's fixed value), as every SAC number in
docs/ was measured. Policies act in the normalised box [-1, 1]^d; the
env's bounds are applied only when stepping the env.
"""
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

ALGO = "sac"


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

    # SAC as in CleanRL's sac_continuous_action.py, with its defaults
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
    learning_starts: int = 5_000
    """timestep to start learning (uniform-random actions before it)"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer"""
    policy_lr: float = 3e-4
    """the learning rate of the policy network optimizer"""
    policy_frequency: int = 2
    """the frequency of training policy (delayed)"""
    alpha: float = 0.2
    """entropy regularization coefficient (initial value when autotuned; CleanRL starts its autotuned alpha at 1)"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""

    # Speed: the same algorithm, faster (off by default)
    # --- shared: speed flags ---
    compile: bool = False
    """torch.compile the networks (forward and backward passes; optimizers stay eager)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision; 'high' is TF32 on GPUs, 'medium' bf16 products on CPUs"""
    cudagraphs: bool = False
    """replay the acting sampler and the updates as CUDA graphs (CUDA only)"""
    # --- end shared: speed flags ---


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
# The training loop (CleanRL's SAC: one critic step per env step after uniform-random warm-up actions,
# policy_frequency actor steps every policy_frequency steps)
if __name__ == "__main__":
    args = tyro.cli(Args)
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

    actor = Actor(obs_dim, act_dim).to(device)
    # --- shared: critics ---
    qf1 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2 = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr, capturable=args.cudagraphs)
    # --- end shared: critics ---
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

    # the evaluation beside the headline: the headline acts with tanh(mean), this with one stochastic draw
    eval_beside = {"one_draw": act}

    def update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations):
        with torch.no_grad():
            next_state_actions, next_state_log_pi, _ = actor.get_action(b_next_obs)
            qf1_next_target = qf1_target(b_next_obs, next_state_actions)
            qf2_next_target = qf2_target(b_next_obs, next_state_actions)
            min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - log_alpha.exp() * next_state_log_pi
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

    def final_stats():
        """The summary's SAC-only field: the entropy coefficient at the end."""
        return {"alpha": float(log_alpha.exp())}

    # --- shared: resume ---
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim, device)
    start_step, num_updates, best_return = load_checkpoint(args.resume, ALGO, args, modules, device) if args.resume else (0, 0, -math.inf)
    restored = bool(args.resume) and load_replay(args.resume.removesuffix(".pt") + "_buffer.pt", start_step, rb, envs)
    # --- end shared: resume ---
    policy = act
    if args.cudagraphs:  # captured after --resume has loaded the optimizers' state
        policy, act_eval, update_critic, update_actor = (CudaGraphed(f) for f in (act, act_eval, update_critic, update_actor))
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
                losses = update_critic(b_obs, b_actions, b_next_obs, b_rewards, b_terminations)
                if global_step % args.policy_frequency == 0:  # TD3 delayed update support
                    for _ in range(args.policy_frequency):  # compensate for the delay with `policy_frequency` updates
                        actor_losses = update_actor(b_obs)
                    losses = {**losses, **actor_losses}
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
