"""Is a trained critic flat against its temperature? Where rewards are sparse, exp(Q/T) can be close to uniform.

    python docs/scripts/critic_flatness.py runs/study/maze runs/study/finger --states 200 --actions 1024

For every dqs checkpoint (`*.pt` written with --save-model) under the run trees that has its replay buffer
beside it, --states states are drawn from the buffer and the twin critics' min(Q1, Q2) is evaluated at
--actions actions drawn uniformly from the action box at each. Per checkpoint it prints the spread of Q over
those actions (max - min; median and 10th-90th percentile over states) beside the temperature of the run's
last update, and the share of the action box that exp(Q/T) covers: exp(entropy) of the softmax of Q/T over
the drawn actions, divided by their number (1 = the uniform policy; 1/actions = one action). A spread well
below T means the Boltzmann policy the sampler targets is close to uniform random actions.
"""
import argparse
import glob
import os
import sys
import types

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from dqs import SoftQNetwork, temperature_at  # noqa: E402


def flatness(state: dict, obs: torch.Tensor, act_dim: int, num_actions: int, generator: torch.Generator) -> dict:
    """Spread of min(Q1, Q2) over uniform actions at each state, and the share of the box exp(Q/T) covers."""
    args = types.SimpleNamespace(**state["args"])
    temperature = float(state["temperature"]) if "temperature" in state else temperature_at(state["num_updates"], args)
    obs_dim = obs.shape[1]
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim), SoftQNetwork(obs_dim, act_dim)
    qf1.load_state_dict(state["qf1"])
    qf2.load_state_dict(state["qf2"])
    actions = torch.rand(obs.shape[0], num_actions, act_dim, generator=generator) * 2 - 1  # the scripts' box is [-1, 1]
    obs = obs[:, None].expand(-1, num_actions, -1)
    with torch.no_grad():
        q = torch.min(qf1(obs, actions), qf2(obs, actions)).squeeze(-1)  # (states, actions)
    spread = q.max(1).values - q.min(1).values
    p = torch.softmax(q / temperature, 1)
    share = torch.exp(-(p * p.clamp_min(1e-30).log()).sum(1)) / num_actions
    return {"temperature": temperature, "q_mean": float(q.mean()), "spread": spread, "share": share}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+")
    p.add_argument("--states", type=int, default=200, help="buffer states drawn per checkpoint")
    p.add_argument("--actions", type=int, default=1024, help="uniform actions drawn per state")
    p.add_argument("--seed", type=int, default=0)
    opts = p.parse_args()
    if opts.states <= 0 or opts.actions <= 1:
        sys.exit(f"error: --states must be positive and --actions above 1, got {opts.states} and {opts.actions}")
    paths = sorted(f for tree in opts.trees for f in glob.glob(os.path.join(tree, "**", "*.pt"), recursive=True)
                   if not f.endswith(("_best.pt", "_buffer.pt")) and os.path.isfile(f.removesuffix(".pt") + "_buffer.pt"))
    torch.set_num_threads(1)
    print("| env | run | step | T | mean Q | spread of Q over actions, median [10 %, 90 %] | share of the box exp(Q/T) covers, median [10 %, 90 %] |")
    print("|---|---|---|---|---|---|---|")
    found = False
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("algo") != "dqs":
            continue
        found = True
        buffer = torch.load(path.removesuffix(".pt") + "_buffer.pt", map_location="cpu", weights_only=True)["buffer"]
        generator = torch.Generator().manual_seed(opts.seed)
        obs = buffer["obs"][: int(buffer["size"])]
        obs = obs[torch.randint(0, obs.shape[0], (opts.states,), generator=generator)].float()
        r = flatness(state, obs, buffer["actions"].shape[-1], opts.actions, generator)
        q10, q50, q90 = (torch.quantile(r["spread"], q).item() for q in (0.1, 0.5, 0.9))
        s10, s50, s90 = (torch.quantile(r["share"], q).item() for q in (0.1, 0.5, 0.9))
        print(f"| {state['env_id']} | {state['args']['exp_name']} seed {state['args']['seed']} | {state['step']} | {r['temperature']:.3g} "
              f"| {r['q_mean']:.3f} | {q50:.3f} [{q10:.3f}, {q90:.3f}] | {s50:.3f} [{s10:.3f}, {s90:.3f}] |", flush=True)
    if not found:
        sys.exit(f"error: no dqs checkpoint with its replay buffer beside it under {' '.join(opts.trees)}")


if __name__ == "__main__":
    main()
