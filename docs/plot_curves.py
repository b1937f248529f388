"""Learning curves for the README from TensorBoard runs or from JSON dumps of them.

    python docs/plot_curves.py OUT.png RUNS_DIR_OR_JSON [...]

A JSON dump maps run names to {"eval/episodic_return": [[step, value], ...], ...} (gpu_scripts/collect.py)."""
import glob
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(source):
    if source.endswith(".json"):
        with open(source) as f:
            return json.load(f)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for d in sorted(glob.glob(os.path.join(source, "*"))):
        ea = EventAccumulator(d, size_guidance={"scalars": 0}).Reload()
        runs[os.path.basename(d)] = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}
    return runs


runs = {}
for source in sys.argv[2:]:
    runs.update(load(source))
by_env = defaultdict(dict)
for name, curves in runs.items():
    env, exp = name.split("__")[:2]
    if curves.get("eval/episodic_return"):
        by_env[env][exp] = curves
fig, axes = plt.subplots(1, len(by_env), figsize=(5 * len(by_env), 3.6), squeeze=False)
for ax, (env, exps) in zip(axes[0], sorted(by_env.items())):
    for exp, curves in sorted(exps.items()):
        steps, values = zip(*curves["eval/episodic_return"])
        ax.plot(steps, values, marker="o", ms=3, label=exp)
    ax.set_title(env)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(sys.argv[1], dpi=110)
print("wrote", sys.argv[1])
