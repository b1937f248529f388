"""The score target's time with the critics' hand-written backward against autograd, measured in one run of this script.

    OMP_NUM_THREADS=1 python docs/scripts/hand_gradient_cost.py

Fresh twin critics of InvertedPendulum-v4's, HalfCheetah-v4's and Humanoid-v4's shapes (the time does not depend on the
weights), 256 states, K = 16, the blend, the exact-bounds target, the default chunking; the two paths run in turn, 60
rounds, so that a slow phase of the machine falls on both. Prints the minimum and the median of each and their ratio.
"""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import dqs  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    for name, obs_dim, act_dim in [("InvertedPendulum-v4", 4, 1), ("HalfCheetah-v4", 17, 6), ("Humanoid-v4", 376, 17)]:
        qf1, qf2 = dqs.SoftQNetwork(obs_dim, act_dim), dqs.SoftQNetwork(obs_dim, act_dim)
        obs, x, t = torch.randn(256, 1, obs_dim), torch.randn(256, act_dim), torch.rand(256)
        hand = dqs.twin_log_target(qf1, qf2, obs, 0.05, True)
        paths = {"autograd": lambda a: hand(a), "hand": hand}  # without value_and_grad, values_and_action_grads uses autograd
        times = {k: [] for k in paths}
        for _ in range(60):
            for k, f in paths.items():
                start = time.perf_counter()
                dqs.mc_score_target(f, x, t, 0.05, 16, form="blend")
                times[k].append(time.perf_counter() - start)
        mins, meds = ({k: agg(v) for k, v in times.items()} for agg in (min, statistics.median))
        print(f"{name}: autograd {1e3 * mins['autograd']:.1f} / {1e3 * meds['autograd']:.1f} ms (min / median), hand "
              f"{1e3 * mins['hand']:.1f} / {1e3 * meds['hand']:.1f} ms; autograd / hand {mins['autograd'] / mins['hand']:.2f} / "
              f"{meds['autograd'] / meds['hand']:.2f}")
