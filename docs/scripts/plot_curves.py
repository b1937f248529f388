"""Learning curves for the README from TensorBoard runs or from JSON dumps of them.

    python docs/plot_curves.py OUT.png RUNS_DIR_OR_JSON [...] [--tag shadow/w1 --tag shadow/saturated]

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


args, tags = sys.argv[2:], []
while "--tag" in args:  # each --tag TAG is a panel of that scalar (the default: eval return, one panel per env)
    i = args.index("--tag")
    tags.append(args[i + 1])
    del args[i : i + 2]
runs = {}
for source in args:
    runs.update(load(source))
panels = defaultdict(dict)  # title -> {exp: [(step, value), ...]}
for name, curves in runs.items():
    if "__" not in name:
        continue  # not a run folder (e.g. runs/logs)
    env, exp, seed = name.split("__")[:3]
    if seed != "1":
        exp = f"{exp} (seed {seed})"
    for tag in tags or ["eval/episodic_return"]:
        if curves.get(tag):
            panels[f"{env} {tag}" if tags else env][exp] = curves[tag]
fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 3.8), squeeze=False)
for ax, (title, exps) in zip(axes[0], sorted(panels.items())):
    colors = plt.get_cmap("tab20").colors  # a colour per run (the default cycle repeats after 10)
    for i, (exp, points) in enumerate(sorted(exps.items())):
        steps, values = zip(*points)
        # SAC stands out, dashed; so do the runs with the blended score target, thick
        style = dict(ls="--", lw=2.2) if exp.startswith("sac") else dict(ls="-", lw=2.2 if "blend" in exp else 1.0)
        ax.plot(steps, values, marker="o", ms=3, color=colors[i % len(colors)], label=exp, **style)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("env steps")
    ax.set_ylabel(title.split(" ", 1)[1] if tags else "eval return")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(sys.argv[1], dpi=110)
print("wrote", sys.argv[1])
