"""Learning curves from TensorBoard run folders or from JSON dumps of them.

    python docs/scripts/plot_curves.py OUT.png RUNS_DIR_OR_JSON [...] [--tag shadow/w1 --tag shadow/saturated]
    python docs/scripts/plot_curves.py --collect RUNS_DIR OUT.json [--name-part _ip_cpu]

The first form draws one panel per env (eval return against env steps), or with --tag one panel per
env and tag. The second writes the curves of every run folder under RUNS_DIR (only those whose name
contains --name-part) to one JSON file, which the first form reads back: a dump maps each run name to
{"eval/episodic_return": [[step, value], ...], ..., "summary": the run's summary.json}. The JSON files
under docs/data/ were written this way."""
import argparse
import glob
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# what --collect keeps of a run: the curves the docs plot or quote, not every loss
KEPT_TAGS = ("eval/episodic_return", "charts/episodic_return", "charts/SPS", "losses/score_target_ess", "losses/qf1_values")


def read_runs(runs_dir, name_part=None, keep=None):
    """{run name: {tag: [(step, value), ...]}} of the TensorBoard folders under runs_dir; keep(tag) filters tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for d in sorted(glob.glob(os.path.join(runs_dir, "*"))):
        name = os.path.basename(d)
        if not os.path.isdir(d) or (name_part and name_part not in name):
            continue
        ea = EventAccumulator(d, size_guidance={"scalars": 0}).Reload()
        tags = [t for t in ea.Tags()["scalars"] if keep is None or keep(t)]
        runs[name] = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags}
    return runs


def collect(runs_dir, out_path, name_part=None):
    runs = read_runs(runs_dir, name_part, keep=lambda t: t in KEPT_TAGS or t.startswith("shadow/"))
    for name, curves in runs.items():
        summary = os.path.join(runs_dir, name, "summary.json")
        if os.path.exists(summary):  # a run still going (or killed) has none
            with open(summary) as f:
                curves["summary"] = json.load(f)
    with open(out_path, "w") as f:
        json.dump(runs, f)
    for name, curves in runs.items():
        evals = curves.get("eval/episodic_return", [])
        print(f"{name}: {len(evals)} evaluations, last {evals[-1] if evals else None}")
    print("wrote", out_path)


def load(source):
    if source.endswith(".json"):
        with open(source) as f:
            return json.load(f)
    return read_runs(source)


def plot(out_path, sources, tags):
    runs = {}
    for source in sources:
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
    fig.savefig(out_path, dpi=110)
    print("wrote", out_path)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", help="OUT.png then run folders' parent directories or JSON dumps")
    p.add_argument("--tag", action="append", default=[], help="a panel of this scalar (repeatable); default: eval return")
    p.add_argument("--collect", nargs=2, metavar=("RUNS_DIR", "OUT_JSON"), help="dump the runs' curves to JSON instead of plotting")
    p.add_argument("--name-part", default=None, help="with --collect: only runs whose folder name contains this")
    args = p.parse_args()
    if args.collect:
        if args.paths:
            p.error("--collect takes no other paths")
        collect(*args.collect, name_part=args.name_part)
    else:
        if len(args.paths) < 2:
            p.error("give OUT.png and at least one run directory or JSON file")
        plot(args.paths[0], args.paths[1:], args.tag)
