"""The toy bandit's DQS with the score network's two details switched one at a time: the sinusoidal
embedding of t and T (the authors': angles t f_k up to t radians; the former DDPM-style one: angles up
to 1000 t) and the initialisation of the score network and the critics (the authors' orthogonal, gain
sqrt(2), zero bias; PyTorch's default).

    python docs/scripts/toy_network_ablation.py                       # the four variants, 5000 iterations
    python docs/scripts/toy_network_ablation.py --variants authors --iterations 12000

Prints one Markdown row per variant: the total-variation distance of n executed actions to the exact
Boltzmann policy, the largest error of a mode's mass, and the wall time. Everything else is
`python toy_bandit.py`'s defaults (seed 1), so the rows differ only by the network.
"""
import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root
sys.path.insert(0, HERE)
import dqs  # noqa: E402
import toy_bandit  # noqa: E402
from score_lag import former_embedding  # noqa: E402

VARIANTS = {  # name: (embedding, initialisation)
    "authors": (dqs.sinusoidal_embedding, dqs.orthogonal_init),
    "former_embedding": (former_embedding, dqs.orthogonal_init),
    "default_init": (dqs.sinusoidal_embedding, lambda module: None),
    "former_network": (former_embedding, lambda module: None),
}

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
p.add_argument("--iterations", type=int, default=toy_bandit.Args().iterations)
p.add_argument("--num-samples", type=int, default=2000, help="executed actions per variant (the test suite's n)")
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
torch.set_num_threads(args.threads)
toy = toy_bandit.Args(iterations=args.iterations, num_samples=args.num_samples)
reward_fn, centers = toy_bandit.make_reward(toy.reward)
exact = toy_bandit.exact_policy(reward_fn, toy.temperature)
floor = toy_bandit.distances(toy_bandit.exact_samples(exact, args.num_samples), exact, centers)
print(f"| network | iterations | TV (floor {floor['tv']:.3f}) | largest mode-mass error | wall (s) |")
print("|---|---|---|---|---|")
for name in args.variants.split(","):
    dqs.sinusoidal_embedding, dqs.orthogonal_init = VARIANTS[name]
    start = time.time()
    act = toy_bandit.train_dqs(toy, reward_fn, progress=False)
    torch.manual_seed(toy.seed + 1)
    d = toy_bandit.distances(act(toy.num_samples, toy.num_diffusion_steps), exact, centers)
    print(f"| {name} | {args.iterations} | {d['tv']:.3f} | {d['max_mode_mass_error']:.3f} | {time.time() - start:.0f} |", flush=True)
