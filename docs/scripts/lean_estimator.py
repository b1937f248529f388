"""Would a leaner estimator pay on the CPU? The score target's critic pass three ways, at Humanoid-v4 sizes.

    python docs/scripts/lean_estimator.py --ks 64 256 1000 --repeats 5

- plain: dqs.py's pass, autograd through min(Q1, Q2), states' part of the first layer computed once per
  call (SoftQNetwork.condition);
- re-encoded: the same with the critics' forward, which recomputes the states' part in every chunk;
- min-critic only: both critics forward without autograd, then the action-gradient of only the critic
  that attains the min, by hand (ReLU masks of the forward pass), on the rows where it does. This skips
  one of the two backward passes: at most 4/3 faster in FLOPs.

The three are timed alternately in one process (median of the repeats, chunks of 8 samples as dqs.py on
the CPU); the printed errors compare Q and grad Q with the plain pass on the same actions.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import dqs  # noqa: E402

OBS_DIM, ACT_DIM, BATCH, CHUNK = 376, 17, 256, 8


def min_critic_only(qf1, qf2, obs, actions):
    q, grad_q = actions.new_empty(actions.shape[:2]), torch.empty_like(actions)
    with torch.no_grad():
        fixed = [F.linear(obs, qf.fc1.weight[:, :OBS_DIM], qf.fc1.bias) for qf in (qf1, qf2)]
        for start in range(0, actions.shape[1], CHUNK):
            a = actions[:, start:start + CHUNK]
            passes = []
            for qf, f in zip((qf1, qf2), fixed):
                z1 = f + F.linear(a, qf.fc1.weight[:, OBS_DIM:])
                z2 = qf.fc2(F.relu(z1))
                passes.append((qf.fc3(F.relu(z2)).squeeze(-1), z1, z2))
            (v1, z11, z12), (v2, z21, z22) = passes
            q[:, start:start + CHUNK] = torch.minimum(v1, v2)
            use1 = v1 <= v2
            g = torch.empty_like(a)
            for qf, z1, z2, rows in ((qf1, z11, z12, use1), (qf2, z21, z22, ~use1)):
                d2 = (z2[rows] > 0) * qf.fc3.weight[0]
                d1 = (z1[rows] > 0) * (d2 @ qf.fc2.weight)
                g[rows] = d1 @ qf.fc1.weight[:, OBS_DIM:]
            grad_q[:, start:start + CHUNK] = g
    return q, grad_q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ks", type=int, nargs="+", default=[64, 256, 1000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    qf1, qf2 = dqs.SoftQNetwork(OBS_DIM, ACT_DIM), dqs.SoftQNetwork(OBS_DIM, ACT_DIM)
    obs = torch.randn(BATCH, 1, OBS_DIM)
    print(f"# CPU, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| K | plain (s) | re-encoded (s) | state part once: speed-up | min-critic only (s) | its speed-up | max rel. error of grad Q |")
    print("|---|---|---|---|---|---|---|")
    for k in args.ks:
        actions = torch.randn(BATCH, k, ACT_DIM)
        q1_at, q2_at = qf1.condition(obs), qf2.condition(obs)
        variants = {
            "plain": lambda: dqs.values_and_action_grads(lambda a: torch.min(q1_at(a), q2_at(a)), actions, CHUNK),
            "re-encoded": lambda: dqs.values_and_action_grads(lambda a: torch.min(qf1(obs, a), qf2(obs, a)), actions, CHUNK),
            "min-critic": lambda: min_critic_only(qf1, qf2, obs, actions),
        }
        times = {name: [] for name in variants}
        for _ in range(args.repeats + 1):  # the first round warms up
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(ts[1:]) for name, ts in times.items()}
        (q, g), (q_lean, g_lean) = variants["plain"](), variants["min-critic"]()
        assert torch.allclose(q, q_lean, rtol=1e-5, atol=1e-5)
        err = float(((g_lean - g).norm(dim=-1) / g.norm(dim=-1).clamp_min(1e-12)).max())
        print(f"| {k} | {med['plain']:.4f} | {med['re-encoded']:.4f} | {med['re-encoded'] / med['plain']:.2f} | "
              f"{med['min-critic']:.4f} | {med['plain'] / med['min-critic']:.2f} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
