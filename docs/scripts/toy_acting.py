"""The toy bandit: which sampler should act? DQS trained once at toy_bandit.py's defaults, then its
executed actions drawn by the score network (the paper's sampler) and by dqs.py's critic-driven sampler
(--acting-score critic) over K, N, the switch point and sigma_max, with the learned critic and with the
true reward in its place (so that the sampler's own error shows apart from the critic's).

    python docs/scripts/toy_acting.py --threads 1 > docs/data/toy_acting.md

TV to the exact policy (20 x 20 bins) and the largest per-mode mass error, n samples each; the noise
floor is the TV of n exact samples.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repo root
import dqs  # noqa: E402
import toy_bandit as tb  # noqa: E402

ROWS = [  # (K, N, clean_until, sigma_max, exact_bounds) of the critic-driven sampler; the first is the toy's default
    (256, 50, 0.6, 1.0, True), (64, 50, 0.6, 1.0, True), (16, 50, 0.6, 1.0, True), (64, 20, 0.6, 1.0, True),
    (256, 20, 0.6, 1.0, True), (64, 100, 0.6, 1.0, True), (64, 50, 0.4, 1.0, True), (64, 50, 0.8, 1.0, True),
    (256, 50, 0.6, 3.0, True), (256, 50, 0.6, 1.0, False), (64, 50, 0.6, 1.0, False),
]

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-samples", type=int, default=10_000)
    opts = p.parse_args()
    torch.set_num_threads(opts.threads)
    args = tb.Args(num_samples=opts.num_samples)
    reward_fn, centers = tb.make_reward(args.reward)
    exact = tb.exact_policy(reward_fn, args.temperature)
    start = time.time()
    act = tb.train_dqs(args, reward_fn, progress=False)
    n, T = args.num_samples, args.temperature
    print(f"`python docs/scripts/toy_acting.py --threads {opts.threads}`: DQS trained once at toy_bandit.py's defaults "
          f"(exact bounds, {args.iterations} iterations, acting with the critic at K = {args.acting_mc_samples}, "
          f"N = {args.num_diffusion_steps}) in {time.time() - start:.0f} s; n = {n} samples per row.\n")
    floor = tb.distances(tb.exact_samples(exact, n, args.seed), exact, centers)
    print(f"Exact mode masses {', '.join(f'{m:.3f}' for m in floor['exact_mode_mass'])}; noise floor TV {floor['tv']:.3f}, "
          f"mass error {floor['max_mode_mass_error']:.3f}.\n")
    print("| sampler | critic | K | N | clean score for t <= | sigma_max | exact bounds | TV | largest mass error | mode masses | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def report(name, critic, k, steps, clean, smax, bounds, draw):
        torch.manual_seed(args.seed + 1)
        t0 = time.time()
        d = tb.distances(draw(), exact, centers)
        print(f"| {name} | {critic} | {k} | {steps} | {clean} | {smax:g} | {bounds} | {d['tv']:.3f} | {d['max_mode_mass_error']:.3f} | "
              f"{', '.join(f'{m:.3f}' for m in d['mode_mass'])} | {time.time() - t0:.0f} |", flush=True)

    schedule = dqs.Schedule(args.sigma_min, args.sigma_max)
    for steps in (20, 50):
        report("score network (the paper's)", "learned", "-", steps, "-", 1.0, args.exact_bounds, lambda: torch.tanh(dqs.sample_actions(
            act.score_net.condition(torch.zeros(n, 1), T), (n, 2), steps, schedule)))
    q1, q2 = (qf.condition(torch.zeros(n, 1, 1)) for qf in act.critics)
    critics = {"learned": lambda a: torch.min(q1(a), q2(a)), "true reward": lambda a: reward_fn(a).to(a.dtype)}
    for critic, q_of_actions in critics.items():
        for k, steps, clean, smax, bounds in ROWS:
            sched = dqs.Schedule(args.sigma_min, smax)
            log_target = lambda x: dqs.log_target_times_T(q_of_actions, x, T, bounds)
            report("critic-driven", critic, k, steps, clean, smax, bounds, lambda: torch.tanh(dqs.sample_actions(
                dqs.critic_score(log_target, T, k, clean, sched), (n, 2), steps, sched)))
