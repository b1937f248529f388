"""The toy bandit's sampler driven by the Monte-Carlo score target of the *true* reward (no network),
over K, N and sigma_max: what DQS would sample if its score network fitted its target exactly.

    python docs/scripts/toy_wide_prior.py          # the paper's score target
    python docs/scripts/toy_wide_prior.py blend    # dqs.py's opt-in --score-target blend

Prints TV to the exact policy, the fraction of non-finite and of saturated (|a| > 0.999) executed
actions, and the mass per mode, n = 1000 samples per row."""
import functools
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repo root, for dqs.py
import dqs  # noqa: E402
import toy_bandit  # noqa: E402

form = sys.argv[1] if len(sys.argv) > 1 else "grad"
if form in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)
if form not in ("grad", "blend"):
    sys.exit(f"error: the score target's form is 'grad' or 'blend', got {form!r}")
toy_bandit.mc_score_target = functools.partial(dqs.mc_score_target, form=form)  # what estimator_driven_actions calls
torch.set_num_threads(2)
args = toy_bandit.Args()
reward_fn, centers = toy_bandit.make_reward(args.reward)
exact = toy_bandit.exact_policy(reward_fn, args.temperature)
print(f"score target: {form}; exact mode masses {[round(m, 3) for m in toy_bandit.distances(exact[0], exact, centers, exact[1])['mode_mass']]}")
for sigma_max in (1.0, 3.0):
    for k in (256, 1000):
        for n_steps in (50, 100, 200):
            start = time.time()
            a = toy_bandit.estimator_driven_actions(reward_fn, 1000, k, n_steps, args.temperature, dqs.Schedule(args.sigma_min, sigma_max))
            d = toy_bandit.distances(a, exact, centers)
            saturated = (a.abs() > 0.999).any(1).float().mean().item()
            print(f"sigma_max {sigma_max:g}  K {k:4d}  N {n_steps:3d}  TV {d['tv']:.3f}  non-finite {d['non_finite']:.3f}  "
                  f"saturated {saturated:.3f}  masses {[round(m, 3) for m in d['mode_mass']]}  ({time.time() - start:.0f} s)",
                  flush=True)
