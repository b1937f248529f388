"""Where dqs.py's temperature rule (--temperature-scale) settles on a frozen critic with a 1-D action, and how wide
the Boltzmann policy is there.

    OMP_NUM_THREADS=1 python docs/scripts/temperature_fixed_point.py runs/InvertedPendulum-v4__ktable__1__*/ktable.pt

The checkpoint is any --save-model checkpoint with twin critics (qf1, qf2) and its replay buffer beside it (SAC's or
DQS's). At 256 buffer states the exact policy exp(Qmin(s, a) / T) is computed on a grid over the box, and the rule's
map T <- scale x RMS over states and the exact policy of dQmin/da is iterated from several starting T. Printed: the
fixed point from each start, the policy's std per state there (median and 10-90 % range), and the same std at a
few fixed T for comparison.
"""
import argparse
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import dqs  # noqa: E402


def policy_std(q, grid, temperature):
    p = torch.softmax(q / temperature, 1)
    mean = (p * grid).sum(1, keepdim=True)
    return (p * (grid - mean).pow(2)).sum(1).sqrt()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--scale", type=float, default=0.09)
    ap.add_argument("--states", type=int, default=256)
    ap.add_argument("--grid", type=int, default=801)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    (path,) = glob.glob(args.checkpoint)
    state = torch.load(path, weights_only=True)
    buffer = torch.load(path.removesuffix(".pt") + "_buffer.pt", weights_only=True)["buffer"]
    obs_dim, act_dim = buffer["obs"].shape[1], buffer["actions"].shape[1]
    if act_dim != 1:
        dqs.fail(f"the exact policy is computed on a grid and needs a 1-D action; {state['env_id']} has {act_dim}")
    qf1, qf2 = dqs.SoftQNetwork(obs_dim, 1), dqs.SoftQNetwork(obs_dim, 1)
    qf1.load_state_dict(state["qf1"])
    qf2.load_state_dict(state["qf2"])
    obs = buffer["obs"][torch.randint(0, buffer["size"], (args.states,))].unsqueeze(1)
    grid = torch.linspace(-1, 1, args.grid + 2)[1:-1].reshape(1, -1, 1).expand(args.states, -1, -1)
    with torch.no_grad():
        q, dq_da = dqs.twin_log_target(qf1, qf2, obs, 1.0).value_and_grad(grid)
    grid, dq_da = grid[..., 0], dq_da[..., 0]
    print(f"{state['env_id']}, step {state['step']}, {args.states} buffer states; Qmin's spread over the box, median: "
          f"{(q.max(1).values - q.min(1).values).median():.3g}")
    for start in (1e-3, 0.05, 1.0, 10.0):
        temperature = torch.tensor(start)
        for _ in range(100):
            temperature = args.scale * (torch.softmax(q / temperature, 1) * dq_da.pow(2)).sum(1).mean().sqrt()
        std = policy_std(q, grid, temperature)
        print(f"  from T = {start:g}: T -> {temperature:.4g}, policy std median {std.median():.3f} "
              f"[{std.quantile(0.1):.3f}, {std.quantile(0.9):.3f}]")
    for temperature in (0.005, 0.02, 0.05, 0.2, 1.0):
        std = policy_std(q, grid, torch.tensor(temperature))
        print(f"  at fixed T = {temperature:g}: policy std median {std.median():.3f} [{std.quantile(0.1):.3f}, {std.quantile(0.9):.3f}]")
