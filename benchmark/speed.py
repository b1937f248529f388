"""Speed of DQS's parts at Humanoid-v4 sizes (obs 376, act 17, batch 256), on CPU or CUDA.

    python benchmark/speed.py                       # CPU, the tables of docs/speed.md
    python benchmark/speed.py --device cuda         # the same on a GPU
    python benchmark/speed.py --fidelity            # sampler fidelity on a 1-D mixture with its exact score
    python benchmark/speed.py --compile             # eager against torch.compile'd networks
    python benchmark/speed.py --memory              # peak memory of the score target, one pass against chunks
    python benchmark/speed.py --blend               # the score target's cost, the paper's form against the blend
    python benchmark/speed.py --precision --checkpoint runs/.../dqs.pt   # float32 against bfloat16: time, and error

Times, as medians over repeats, with the device synchronised around each call:
  - the Monte-Carlo score target over K (both critics' forward and action-gradients at B x K actions),
    in one pass and in dqs.py's CPU chunks,
  - the reverse-SDE sampler over N, for the backup batch (256 states) and for acting (1 state), and
    for 256 states without the sampler's reuse of the state and T encoding,
  - one whole DQS update (critic step with its backup, then the score step) at the chosen K and N,
and, for the score target, the time the same FLOPs take as one plain matrix product on this device,
so that "how far from the hardware" is a ratio measured in the same run.
"""
import contextlib
import copy
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for dqs.py
import dqs  # noqa: E402

OBS_DIM, ACT_DIM, BATCH = 376, 17, 256


@dataclass
class Args:
    device: str = "cpu"
    """torch device to time on"""
    ks: tuple[int, ...] = (64, 256, 1000, 4096)
    """numbers of Monte-Carlo samples K to time"""
    ns: tuple[int, ...] = (10, 20, 50, 100)
    """numbers of diffusion steps N to time"""
    update_k: int = 1000
    """K of the whole-update rows over N"""
    update_n: int = 50
    """N of the whole-update rows over K"""
    repeats: int = 7
    """timed repeats per row (the median is reported)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    matmul_precision: str = "highest"
    """torch.set_float32_matmul_precision for every row ('medium': bf16 products on CPUs, 'high': TF32 on GPUs)"""
    update_only: bool = False
    """time only the whole update and acting (the last table)"""
    fidelity: bool = False
    """instead of speed: sample a 1-D 0.7/0.3 two-mode mixture with its exact noised score, over N and sigma_max"""
    fidelity_samples: int = 20_000
    """samples per row of the fidelity table"""
    compile: bool = False
    """instead of the tables above: the score network and the critics eager against torch.compile'd, same run"""
    memory: bool = False
    """instead of the tables above: peak memory of the score target over K, one pass against CPU chunks"""
    blend: bool = False
    """instead of the tables above: the score target in the paper's form against --score-target blend, same run"""
    precision: bool = False
    """instead of the tables above: the score target in float32 against --matmul-precision medium (bf16
    allowed inside float32 matmuls) and against bf16 autocast, same run; with --checkpoint, also their error"""
    checkpoint: str | None = None
    """a dqs.py checkpoint whose trained critics --precision measures the error on, at states of its env"""
    memory_k: int = 0
    """(internal) measure the score target's peak memory at this K in this process and print one row"""


def fidelity_table(args):
    """Mode mass, mean and variance of the sampler driven by the *exact* score of a noised mixture
    0.7 N(-0.5, 0.1^2) + 0.3 N(0.5, 0.1^2): what N and sigma_max cost, free of any learning error."""
    w, m, s2 = torch.tensor([0.7, 0.3]), torch.tensor([-0.5, 0.5]), torch.tensor([0.01, 0.01])
    n = args.fidelity_samples
    print(f"# sampler fidelity, exact score, n = {n} (standard error of the mass {math.sqrt(0.21 / n):.4f})\n")
    print("| sigma_max | N | mass of the 0.7 mode | mean (exact -0.200) | variance (exact 0.220) |")
    print("|---|---|---|---|---|")
    for sigma_max in (1.0, 3.0):
        def score(x, t):
            v = s2 + dqs.Schedule(1e-5, sigma_max).h(t)
            resp = torch.softmax(torch.log(w) - 0.5 * (x - m) ** 2 / v - 0.5 * torch.log(v), -1)
            return (resp * (-(x - m) / v)).sum(-1, keepdim=True)

        for num_steps in (10, 20, 50, 100, 200, 500, 1000):
            x = dqs.sample_actions(score, (n, 1), num_steps, dqs.Schedule(1e-5, sigma_max))[:, 0]
            print(f"| {sigma_max:g} | {num_steps} | {(x < 0).float().mean():.3f} | {x.mean():.3f} | {x.var():.3f} |", flush=True)


def timeit(fn, device, repeats):
    fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def score_target_flops(k):
    """Multiply-adds of the estimator: per critic, per perturbed action, the action columns of layer 1
    (17 x 256) and layer 2 (256 x 256) and the head, forward and the input-gradient backward (x2)."""
    macs = ACT_DIM * 256 + 256 * 256 + 256
    return 2 * 2 * 2 * BATCH * k * macs  # 2 FLOPs per MAC, forward + backward, two critics


@contextlib.contextmanager
def precision(mode, device):
    """"highest": float32 throughout; "medium": torch.set_float32_matmul_precision("medium"), what the
    scripts' --matmul-precision medium sets (float32 tensors; the matmuls may compute in bf16 or TF32
    inside); "autocast": torch.autocast to bf16 (activations and Q themselves in bf16)."""
    if mode == "autocast":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(mode)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def env_states(env_id, n, seed=0):
    """n observations of env_id under uniformly random actions (episodes reset as they end)."""
    import gymnasium as gym

    env, states = gym.make(env_id), []
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    while len(states) < n:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return torch.as_tensor(np.array(states), dtype=torch.float32)


def precision_table(args, q_min, obs, actions, t, T, device):
    # "high" (TF32) only changes anything on a GPU
    modes = ("highest", "high", "medium", "autocast") if device.type == "cuda" else ("highest", "medium", "autocast")

    def target(mode, k, q_fn=q_min, o=obs, a=actions, tt=t, seed=None):
        if seed is not None:
            torch.manual_seed(seed)
        with precision(mode, device):
            return dqs.mc_score_target(lambda ac: q_fn(o.unsqueeze(1), ac), a, tt, T, k)

    # what each mode does to one plain product (float32 rounds at about 6e-8, bf16 at about 4e-3)
    a_mat, b_mat = torch.randn(2048, 256, device=device), torch.randn(256, 256, device=device)
    exact = a_mat.double() @ b_mat.double()
    print("| mode | relative error of one 2048 x 256 x 256 product, against float64 (max over entries / max entry) |")
    print("|---|---|")
    for mode in modes:
        with precision(mode, device):
            error = (a_mat @ b_mat).double() - exact
        print(f"| {mode} | {error.abs().max() / exact.abs().max():.2e} |")
    print()
    print("| K | score target, float32 (s) | " + " | ".join(f"{m} (s) | speed-up" for m in modes[1:]) + " |")
    print("|---|---|" + "---|---|" * (len(modes) - 1))
    for k in args.ks:
        times = [timeit(lambda: target(mode, k), device, args.repeats) for mode in modes]
        print(f"| {k} | {times[0]:.4f} | " + " | ".join(f"{s:.4f} | {times[0] / s:.2f}" for s in times[1:]) + " |", flush=True)
    if args.checkpoint is None:
        return
    # error on trained critics: the same z draws at each precision against float32, set beside the float32
    # estimator's own spread (the RMS difference of two independent draws, over sqrt(2)) and beside float32's
    # own rounding (the same draws with the critics evaluated in float64)
    state = torch.load(args.checkpoint, map_location=device, weights_only=True)
    o = env_states(state["env_id"], BATCH).to(device)
    qfs = []
    for name in ("qf1", "qf2"):
        qf = dqs.SoftQNetwork(o.shape[1], state[name]["fc1.weight"].shape[1] - o.shape[1]).to(device)
        qf.load_state_dict(state[name])
        qfs.append(qf.requires_grad_(False))
    qfs64 = [copy.deepcopy(qf).double() for qf in qfs]
    act_dim = qfs[0].fc1.weight.shape[1] - o.shape[1]

    def q_fn(ob, ac):
        return torch.min(qfs[0](ob, ac), qfs[1](ob, ac))

    def q_fn64(ob, ac):  # the same float32 inputs and z, the arithmetic in float64
        ob, ac = ob.double(), ac.double()
        return torch.min(qfs64[0](ob, ac), qfs64[1](ob, ac)).float()

    print(f"\nerror on the critics of {args.checkpoint} (step {state['step']}), {BATCH} states of {state['env_id']}, "
          f"T = {T}, actions uniform in the box plus the noise at t, the same z draws; ratio = RMS error / the float32 estimator's own spread\n")
    print("| K | t | float32 estimator's spread (RMS) | float32 rounding (RMS) | " + " | ".join(f"{m}: RMS error | ratio" for m in modes[1:]) + " |")
    print("|---|---|---|---|" + "---|---|" * (len(modes) - 1))
    g = torch.Generator(device="cpu").manual_seed(1)
    for k in args.ks:
        for t_value in (0.1, 0.5, 0.9):
            tt = torch.full((BATCH,), t_value, device=device)
            h = dqs.Schedule().h(tt).unsqueeze(-1)
            a = (torch.rand(BATCH, act_dim, generator=g) * 2 - 1).to(device) + h.sqrt() * torch.randn(BATCH, act_dim, generator=g).to(device)
            ref = target("highest", k, q_fn, o, a, tt, seed=2)
            spread = (ref - target("highest", k, q_fn, o, a, tt, seed=3)).pow(2).mean().sqrt() / math.sqrt(2)
            rounding = (target("highest", k, q_fn64, o, a, tt, seed=2) - ref).pow(2).mean().sqrt()
            errors = [(target(mode, k, q_fn, o, a, tt, seed=2) - ref).pow(2).mean().sqrt() for mode in modes[1:]]
            print(f"| {k} | {t_value} | {spread:.4g} | {rounding:.4g} | " + " | ".join(f"{e:.4g} | {e / spread:.4f}" for e in errors) + " |", flush=True)


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.fidelity:
        fidelity_table(args)
        raise SystemExit(0)
    qf1, qf2 = dqs.SoftQNetwork(OBS_DIM, ACT_DIM).to(device), dqs.SoftQNetwork(OBS_DIM, ACT_DIM).to(device)
    score_net = dqs.ScoreNetwork(OBS_DIM, ACT_DIM).to(device)
    obs = torch.randn(BATCH, OBS_DIM, device=device)
    actions = torch.rand(BATCH, ACT_DIM, device=device) * 2 - 1
    t = torch.rand(BATCH, device=device)
    T = 0.05

    def q_min(o, a):
        return torch.min(qf1(o, a), qf2(o, a))

    def q_min_at(o):  # as dqs.py's estimator sees the critics: at fixed states, their part computed once
        q1_at, q2_at = qf1.condition(o.unsqueeze(1)), qf2.condition(o.unsqueeze(1))
        return lambda a: torch.min(q1_at(a), q2_at(a))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if not args.memory_k:
        print(f"# benchmark/speed.py on {name}, torch {torch.__version__}\n")
    chunk = max(1, dqs.CPU_CHUNK_ROWS // BATCH)  # dqs.py's default chunk on the CPU, in samples
    if (args.memory or args.memory_k) and device.type != "cpu":
        raise SystemExit("error: --memory measures the process's resident memory, so it runs on the CPU only")
    if args.memory:
        # one fresh process per K, because the peak resident size only ever grows within a process
        print(f"| K | score target, one pass: peak memory (MiB) | in chunks of {chunk} samples (MiB) | ratio |")
        print("|---|---|---|---|")
        for k in args.ks:
            subprocess.run([sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--memory-k", str(k)], check=True)
        raise SystemExit(0)
    if args.memory_k:
        # peak resident size above what the networks and inputs hold: the chunked call first, since its
        # peak is the smaller one, then the one pass (ru_maxrss is in KiB on Linux)
        def peak_mib():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        base = peak_mib()
        dqs.mc_score_target(q_min_at(obs), actions, t, T, args.memory_k, chunk_size=chunk)
        chunked = peak_mib() - base
        dqs.mc_score_target(q_min_at(obs), actions, t, T, args.memory_k, chunk_size=args.memory_k)
        one_pass = peak_mib() - base
        print(f"| {args.memory_k} | {one_pass:.0f} | {chunked:.0f} | {one_pass / max(chunked, 1):.1f} |", flush=True)
        raise SystemExit(0)
    if args.compile:
        # torch.compile of the networks (not of dqs.py's Python loops): the sampler's N steps and the
        # estimator's chunks call the compiled forward (and, for the estimator, its compiled backward)
        print("| part | eager (s) | torch.compile (s) | speed-up | first call, compiling (s) |")
        print("|---|---|---|---|---|")
        compiled_score_net = torch.compile(score_net)
        compiled_q_min = torch.compile(q_min)
        parts = [(f"sampler, 256 states, N = {args.update_n}", lambda net, q: dqs.sample_actions(net.condition(obs, T), (BATCH, ACT_DIM), args.update_n)),
                 (f"sampler, 1 state, N = {args.update_n}", lambda net, q: dqs.sample_actions(net.condition(obs[:1], T), (1, ACT_DIM), args.update_n))]
        parts += [(f"score target, K = {k}", lambda net, q, k=k: dqs.mc_score_target(lambda a: q(obs.unsqueeze(1), a), actions, t, T, k)) for k in args.ks]
        def compare(label, part):
            start = time.perf_counter()
            part(compiled_score_net, compiled_q_min)
            first = time.perf_counter() - start
            eager = timeit(lambda: part(score_net, q_min), device, args.repeats)
            compiled = timeit(lambda: part(compiled_score_net, compiled_q_min), device, args.repeats)
            print(f"| {label} | {eager:.4f} | {compiled:.4f} | {eager / compiled:.2f} | {first:.1f} |", flush=True)

        for label, part in parts:
            compare(label, part)
            if label.startswith("score target"):
                # the same with the critics' parameters frozen: eager autograd skips their gradients
                # anyway, a compiled backward may not (it recompiles for the changed requires_grad)
                for p in list(qf1.parameters()) + list(qf2.parameters()):
                    p.requires_grad_(False)
                compare(f"{label}, critics' parameters frozen", part)
                for p in list(qf1.parameters()) + list(qf2.parameters()):
                    p.requires_grad_(True)
        raise SystemExit(0)
    if args.precision:
        precision_table(args, q_min, obs, actions, t, T, device)
        raise SystemExit(0)
    if args.blend:
        # the blend adds elementwise work on the B x K x 17 draws, no critic evaluations
        print("| K | score target, paper's S_K (s) | --score-target blend (s) | ratio |")
        print("|---|---|---|---|")
        for k in args.ks:
            grad = timeit(lambda: dqs.mc_score_target(q_min_at(obs), actions, t, T, k), device, args.repeats)
            blend = timeit(lambda: dqs.mc_score_target(q_min_at(obs), actions, t, T, k, form="blend"), device, args.repeats)
            print(f"| {k} | {grad:.4f} | {blend:.4f} | {blend / grad:.3f} |", flush=True)
        raise SystemExit(0)
    if not args.update_only:
        # the score target in one pass over all B x K perturbed actions, and in chunks of CPU_CHUNK_ROWS
        # (dqs.py's default on the CPU); "ratio" is a matmul with the same FLOPs over the chunked time
        # "states re-encoded" calls the critics' forward on every chunk, which recomputes the states' part of
        # their first layer each time, where dqs.py's estimator computes it once (SoftQNetwork.condition)
        print(f"| K | score target, one pass (s) | in chunks of {chunk} samples (s) | speed-up | chunks, states re-encoded per chunk (s) | state part once: speed-up | same FLOPs as one matmul (s) | ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for k in args.ks:
            one_pass = timeit(lambda: dqs.mc_score_target(q_min_at(obs), actions, t, T, k, chunk_size=k), device, args.repeats)
            chunked = timeit(lambda: dqs.mc_score_target(q_min_at(obs), actions, t, T, k, chunk_size=chunk), device, args.repeats)
            reencoded = timeit(lambda: dqs.mc_score_target(lambda a: q_min(obs.unsqueeze(1), a), actions, t, T, k, chunk_size=chunk), device, args.repeats)
            # one (m x 256) @ (256 x n) product with the same FLOP count
            m = int(score_target_flops(k) / (2 * 256 * 256))
            a_mat, b_mat = torch.randn(m, 256, device=device), torch.randn(256, 256, device=device)
            mm = timeit(lambda: a_mat @ b_mat, device, args.repeats)
            print(f"| {k} | {one_pass:.4f} | {chunked:.4f} | {one_pass / chunked:.2f} | {reencoded:.4f} | {reencoded / chunked:.2f} | {mm:.4f} | {mm / chunked:.2f} |", flush=True)

        def score_every_step(x, t):
            # the same network without the sampler's reuse: state and T encoded, t embedded per row, every step
            return score_net(obs, x, t.expand(x.shape[0]), T)

        print("\n| N | sampler, 256 states, re-encoding every step (s) | sampler, 256 states (s) | speed-up | sampler, 1 state (s) |")
        print("|---|---|---|---|---|")
        for n in args.ns:
            naive = timeit(lambda: dqs.sample_actions(score_every_step, (BATCH, ACT_DIM), n), device, args.repeats)
            big = timeit(lambda: dqs.sample_actions(score_net.condition(obs, T), (BATCH, ACT_DIM), n), device, args.repeats)
            one = timeit(lambda: dqs.sample_actions(score_net.condition(obs[:1], T), (1, ACT_DIM), n), device, args.repeats)
            print(f"| {n} | {naive:.4f} | {big:.4f} | {naive / big:.2f} | {one:.4f} |", flush=True)

    q_opt = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=1e-3)
    s_opt = torch.optim.Adam(score_net.parameters(), lr=3e-4)
    rewards, terminations = torch.randn(BATCH, device=device), torch.zeros(BATCH, device=device)

    def update(k, n):
        # the same work as one step of dqs.py's loop: critic step with fresh samples at s', then score step
        with torch.no_grad():
            next_a = torch.tanh(dqs.sample_actions(score_net.condition(obs, T), (BATCH, ACT_DIM), n))
            y = rewards + 0.99 * (1 - terminations) * q_min(obs, next_a)
        q_loss = F.mse_loss(qf1(obs, actions), y) + F.mse_loss(qf2(obs, actions), y)
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        loss = dqs.score_matching_loss(score_net, q_min_at(obs), obs, actions, T, k)
        s_opt.zero_grad()
        loss.backward()
        s_opt.step()

    print("\n| K | N | one DQS update (s) | acting, 1 state (s) | env steps/s (update + act) |")
    print("|---|---|---|---|---|")
    rows = [(k, args.update_n) for k in args.ks] + [(args.update_k, n) for n in args.ns if n != args.update_n]
    for k, n in rows:
        sec = timeit(lambda: update(k, n), device, args.repeats)
        act = timeit(lambda: dqs.sample_actions(score_net.condition(obs[:1], T), (1, ACT_DIM), n), device, args.repeats)
        print(f"| {k} | {n} | {sec:.4f} | {act:.4f} | {1 / (sec + act):.1f} |", flush=True)
