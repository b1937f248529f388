"""One draw per state: DQS at its defaults (K = 16, N = 20) against SAC on one task, eval return against env
steps, one line per seed.

    python docs/scripts/plot_curves.py --collect runs/study/ip_critic/InvertedPendulum-v4/dqs/seed1/runs docs/data/ip_one_draw/seed1.json
    python docs/scripts/plot_one_draw.py docs/img/ip_one_draw.png docs/data/ip_one_draw/seed*.json \
        --sac docs/data/ip_blend_temperature/aggregate.json --task InvertedPendulum-v4

The DQS curves are plot_curves.py dumps of the runs; SAC's are the learning runner's aggregate of its
earlier runs (same flags: learning starts 5000, 5 evaluation episodes every 2500 steps, one thread).
--earlier DUMP [DUMP ...] --earlier-label TEXT adds another set of DQS runs in grey (e.g. an earlier default).
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("dqs", nargs="+", help="plot_curves.py --collect dumps of the DQS runs")
    p.add_argument("--sac", required=True, help="a learning-runner aggregate.json with SAC runs of the task")
    p.add_argument("--task", default="InvertedPendulum-v4", help="the task's name for the title")
    p.add_argument("--label", default="DQS, defaults (K = 16, N = 20), one draw per state")
    p.add_argument("--earlier", nargs="*", default=[], help="plot_curves.py dumps of other DQS runs, drawn in grey")
    p.add_argument("--earlier-label", default="DQS, an earlier setting")
    p.add_argument("--eval-episodes", type=int, default=5, help="evaluation episodes per point, for the axis label")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, path in enumerate(args.earlier):
        with open(path) as f:
            for name, curves in json.load(f).items():
                steps, values = zip(*curves["eval/episodic_return"])
                ax.plot(steps, values, "-o", ms=3, color="0.6", alpha=0.8, label=args.earlier_label if i == 0 else None)
    for i, path in enumerate(args.dqs):
        with open(path) as f:
            for name, curves in json.load(f).items():
                steps, values = zip(*curves["eval/episodic_return"])
                ax.plot(steps, values, "-o", ms=3, color="tab:blue", alpha=0.8, label=args.label if i == 0 else None)
    with open(args.sac) as f:
        sac = [r for r in json.load(f)["runs"] if r["exp_name"] == "sac"]
    for i, r in enumerate(sac):
        ax.plot(r["steps"], r["values"], "--s", ms=3, color="tab:red", alpha=0.7, label="SAC, its deterministic tanh(mean)" if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"eval return ({args.eval_episodes} episodes)")
    ax.set_title(f"{args.task}: one line per seed")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print("saved", args.out)
