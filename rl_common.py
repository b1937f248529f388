"""The reinforcement-learning skeleton that dqs.py and sac_baseline.py share, kept here so that `diff
sac_baseline.py dqs.py` shows the two policies and their updates: the experiment's bookkeeping flags, the
run's folder and logger, env construction (MuJoCo and DeepMind Control), a replay buffer on the training
device, evaluation (with video), checkpoints that resume a run, and CUDA-graph replay for --cudagraphs.
"""
import dataclasses
import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):  # headless: render offscreen for --capture-video
    os.environ.setdefault("MUJOCO_GL", "egl")  # (set before MuJoCo and dm_control load)


@dataclass
class ExperimentArgs:
    """CleanRL's bookkeeping flags"""

    exp_name: str = "experiment"
    """the name of this experiment (each script sets its own file name as the default)"""
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


@dataclass
class SpeedArgs:
    """the same algorithm, faster (off by default)"""

    compile: bool = False
    """torch.compile the networks (forward and backward passes; optimizers stay eager)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision; 'high' is TF32 on GPUs, 'medium' bf16 products on CPUs"""
    cudagraphs: bool = False
    """replay the acting sampler and the updates as CUDA graphs (CUDA only)"""


def parse_args(args_cls, defaults=None):
    """tyro.cli with one --help section per dataclass that args_cls derives from, titled after that class's root
    (ExperimentArgs -> "experiment options"; a script's extension of SpeedArgs -> "speed options"), its docstring
    under the title, the flags without a prefix; merged into one flat args_cls: the object every other line reads,
    the checkpoint stores and the summary prints. Defaults are args_cls's own unless an instance is given."""
    defaults = defaults or args_cls()
    sections = {re.sub(r"(?<!^)(?=[A-Z])", "_", base.__mro__[-2].__name__.removesuffix("Args")).lower(): base
                for base in reversed(args_cls.__bases__)}

    def section_default(base):
        return lambda: base(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(base)})

    cli_cls = dataclasses.make_dataclass(args_cls.__name__, [(name, base, dataclasses.field(default_factory=section_default(base)))
                                                             for name, base in sections.items()])
    cli = tyro.cli(cli_cls, config=(tyro.conf.OmitArgPrefixes,))
    return args_cls(**{f.name: getattr(getattr(cli, name), f.name) for name, base in sections.items() for f in dataclasses.fields(base)})


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


def start_run(args):
    """Seeds, the device and the run's folder `runs/{env}__{exp_name}__{seed}__{time}` with its TensorBoard
    writer (a resumed run keeps writing into the folder of its checkpoint); wandb with --track."""
    run_name = f"{args.env_id.replace('/', '_')}__{args.exp_name}__{args.seed}__{int(time.time())}"
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


# ---------------------------------------------------------------------------------------------
# Evaluation on its own env and seed, with the script's evaluation policy act_fn(obs (1, obs_dim)) -> actions in [-1, 1].
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
CHECKPOINT_METADATA = ("algo", "env_id", "step", "num_updates", "args")  # beside the modules' state dicts


def all_finite(modules: dict) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules.values() if isinstance(m, nn.Module) for p in m.parameters())


def save_checkpoint(path: str, algo: str, step: int, num_updates: int, args, modules: dict) -> bool:
    if not all_finite(modules):
        return False  # diverged: keep the last good checkpoint rather than overwrite it with NaNs
    state = dict(zip(CHECKPOINT_METADATA, (algo, args.env_id, step, num_updates, asdict(args))))
    state.update({name: m.state_dict() if hasattr(m, "state_dict") else m for name, m in modules.items()})
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # atomic: a crash while writing never destroys the last good checkpoint
    return True


def load_checkpoint(path: str, algo: str, args, modules: dict, device: torch.device) -> tuple[int, int]:
    """Loads every module in place; returns the env step and the number of updates to continue from."""
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
    return int(state["step"]), int(state.get("num_updates", 0))


# ---------------------------------------------------------------------------------------------
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
