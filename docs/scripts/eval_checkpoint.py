"""A saved DQS policy over many episodes: how often does it solve the task, beyond a run's 5-episode evaluations?

    python docs/scripts/eval_checkpoint.py RUN_TREE [RUN_TREE ...] --episodes 50 --solve-threshold 1000

Every dqs checkpoint (`*.pt` written with --save-model, as benchmark/learning.py runs do) under the RUN_TREEs
is loaded, its policy rebuilt as `dqs.py` samples it (the run's --acting-score sampler: the critic-driven one, or
the score network with the --score-ema average when the run had one; the temperature of its last update) and run for --episodes episodes from the starts seed + 10000 + i, the
same starts as the run's own evaluations (its first five) and more. Prints a Markdown table: per
checkpoint the mean and spread of the returns, the share of episodes at or above the threshold, and the
mean of the first five episodes, then the same five starts again with fresh sampler noise.

With --best-of M the policy draws M actions per state and executes the one the twin critics value most,
min(Q1, Q2), as `dqs.py --eval-best-of M` evaluates (not the paper's): if the failures come from unlucky
draws of a policy whose critic knows better, this removes them. --num-diffusion-steps, --acting-mc-samples and
--clean-score-until sample the same critics with another N or K (is the one-draw policy held back by its sampler?).
"""
import argparse
import glob
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from dqs import (Schedule, ScoreNetwork, SoftQNetwork, best_of, critic_policy, evaluate, gym_make, sample_actions,  # noqa: E402
                 temperature_at)


def load_policy(state, m: int = 1, overrides: dict | None = None):
    """The evaluated policy of a loaded dqs checkpoint (m > 1: the highest-Q of m samples), and the run's args: the
    sampler the run acted with (--acting-score: the critic-driven one, or the score network)."""
    args = types.SimpleNamespace(**state["args"] | {k: v for k, v in (overrides or {}).items() if v is not None})
    env = gym_make(args.env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    net = ScoreNetwork(obs_dim, act_dim)
    net.load_state_dict(state["policy_net"] if "policy_net" in state else state["score_net"])
    temperature = state["temperature"] if "temperature" in state else torch.tensor(temperature_at(state["num_updates"], args))
    schedule = Schedule(args.sigma_min, args.sigma_max)
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim), SoftQNetwork(obs_dim, act_dim)
    qf1.load_state_dict(state["qf1"])
    qf2.load_state_dict(state["qf2"])

    def sample(obs):
        if getattr(args, "acting_score", "network") == "critic":  # as dqs.py acts
            return critic_policy(qf1, qf2, obs, temperature, args, schedule)
        return torch.tanh(sample_actions(net.condition(obs, temperature), (obs.shape[0], act_dim), args.num_diffusion_steps, schedule))

    def act(obs):  # as dqs.py evaluates with --eval-best-of
        return best_of(sample, lambda o, a: torch.min(qf1(o, a), qf2(o, a)), obs, m)

    return act, args


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--solve-threshold", type=float, default=1000.0)
    p.add_argument("--sampler-seed", type=int, default=0, help="torch seed of the sampler's noise")
    p.add_argument("--best-of", type=int, default=1, help="draws per state; act with the one of highest min(Q1, Q2)")
    p.add_argument("--num-diffusion-steps", type=int, default=None, help="sample with this N instead of the run's")
    p.add_argument("--acting-mc-samples", type=int, default=None, help="the critic-driven sampler's K instead of the run's")
    p.add_argument("--acting-estimate", choices=["grad", "blend", "cv", "refit"], default=None,
                   help="the critic-driven sampler's estimate above the switch instead of the run's")
    p.add_argument("--clean-score-until", type=float, default=None,
                   help="the critic-driven sampler's switch to the clean score grad E / T instead of the run's")
    opts = p.parse_args()
    paths = sorted(f for tree in opts.trees for f in glob.glob(os.path.join(tree, "**", "*.pt"), recursive=True))
    torch.set_num_threads(1)
    print(f"| run | step | mean over {opts.episodes} episodes [std] | episodes >= {opts.solve_threshold:g} | "
          "first 5 starts | the same 5 again |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("algo") != "dqs":
            continue
        overrides = {"num_diffusion_steps": opts.num_diffusion_steps, "acting_mc_samples": opts.acting_mc_samples,
                     "clean_score_until": opts.clean_score_until, "acting_estimate": opts.acting_estimate}
        act, args = load_policy(state, opts.best_of, overrides)
        torch.manual_seed(opts.sampler_seed)
        returns = evaluate(act, args.env_id, opts.episodes, args.seed + 10_000, torch.device("cpu"))
        again = evaluate(act, args.env_id, 5, args.seed + 10_000, torch.device("cpu"))
        solved = int((returns >= opts.solve_threshold).sum())
        name = f"{args.exp_name} seed {args.seed}" + (f", best of {opts.best_of}" if opts.best_of > 1 else "") + \
            "".join(f", {k} {v}" for k, v in overrides.items() if v is not None)
        print(f"| {name} | {state['step']} | {returns.mean():.1f} [{returns.std():.1f}] | {solved}/{opts.episodes} | "
              f"{returns[:5].mean():.1f} | {again.mean():.1f} |", flush=True)


if __name__ == "__main__":
    main()
