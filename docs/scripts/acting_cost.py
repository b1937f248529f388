"""Time of one action of the critic-driven sampler, per --acting-estimate, measured in one run of this script.

    OMP_NUM_THREADS=1 python docs/scripts/acting_cost.py --env-id InvertedDoublePendulum-v4 --repeats 200

Critics of the task's shapes (fresh weights: the time does not depend on them) at one state, the sampler as
dqs.py's act_critic builds it (exact bounds, switch at --clean-score-until, K = --acting-mc-samples, N steps).
The estimators run in turn, one action each per round, so that a slow phase of the machine falls on all of
them; prints the median milliseconds per action of each and its ratio to the first. An estimate written
`refit:autograd` takes the critics' action-gradients by autograd instead of their hand-written backward
(dqs.twin_log_target's value_and_grad, the default path):

    OMP_NUM_THREADS=1 python docs/scripts/acting_cost.py --env-id Humanoid-v4 --estimates refit,refit:autograd
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import dqs  # noqa: E402
from dqs import Schedule, SoftQNetwork, critic_policy, gym_make  # noqa: E402

HAND = dqs.twin_log_target


def by_autograd(*args, **kwargs):
    """The twin log target without its value_and_grad, so that values_and_action_grads takes autograd's path."""
    log_target = HAND(*args, **kwargs)
    return lambda x: log_target(x)

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env-id", default="InvertedDoublePendulum-v4")
    p.add_argument("--estimates", default="refit,blend", help="comma list of --acting-estimate values")
    p.add_argument("--acting-mc-samples", type=int, default=64)
    p.add_argument("--num-diffusion-steps", type=int, default=20)
    p.add_argument("--clean-score-until", type=float, default=0.6)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    env = gym_make(args.env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim), SoftQNetwork(obs_dim, act_dim)
    schedule, temperature = Schedule(), torch.tensor(0.05)
    obs = torch.randn(1, obs_dim)

    def act(form):  # dqs.py's acting policy with this estimate
        estimate, _, path = form.partition(":")
        dqs.twin_log_target = by_autograd if path == "autograd" else HAND
        return critic_policy(qf1, qf2, obs, temperature, argparse.Namespace(**vars(args), acting_estimate=estimate, exact_bounds=True,
                                                                            mc_chunk_size=None), schedule)

    forms = args.estimates.split(",")
    times = {f: [] for f in forms}
    for f in forms:  # warm-up
        act(f)
    for _ in range(args.repeats):
        for f in forms:
            start = time.perf_counter()
            act(f)
            times[f].append(time.perf_counter() - start)
    base = statistics.median(times[forms[0]])
    print(f"{args.env_id}, K = {args.acting_mc_samples}, N = {args.num_diffusion_steps}, {torch.get_num_threads()} thread(s), "
          f"{args.repeats} actions each, medians:")
    for f in forms:
        m = statistics.median(times[f])
        print(f"  {f:6s} {1000 * m:7.2f} ms per action  ({m / base:.2f}x {forms[0]})")
