"""Training episodes against evaluations, one panel per run: does the policy that acts while it learns
do as well as the same policy frozen for an evaluation?

    python docs/scripts/train_vs_eval.py OUT.png RUN_TREE [RUN_TREE ...] [--after 15000]

Every folder under the RUN_TREEs that holds TensorBoard events and a summary.json is a run (as
benchmark/learning.py writes them). A panel draws the returns of the training episodes (dots, at the
step each one ended) and of the evaluations (line). It prints a Markdown table: per run, the longest
training episode, the median training return after --after steps, and the evaluations.
"""
import argparse
import glob
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curves(run_dir):
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0}).Reload()
    return [[(e.step, e.value) for e in events.Scalars(tag)] for tag in ("charts/episodic_return", "eval/episodic_return")]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("trees", nargs="+")
    p.add_argument("--after", type=int, default=15_000, help="the median training return counts episodes ending after this step")
    args = p.parse_args()
    runs = sorted(os.path.dirname(f) for tree in args.trees for f in glob.glob(os.path.join(tree, "**", "summary.json"), recursive=True))
    if not runs:
        p.error(f"no run folder (one with a summary.json) under {' '.join(args.trees)}")
    cols = min(4, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    print(f"| run | longest training episode (return) | median training return after {args.after} | evaluations |")
    print("|---|---|---|---|")
    for ax, run in zip(axes.flat, runs):
        train, evals = curves(run)
        name = os.path.basename(run).split("__")[1] + " seed " + os.path.basename(run).split("__")[2]
        late = [v for s, v in train if s > args.after]
        print(f"| {name} | {max(v for _, v in train):.0f} | {np.median(late) if late else float('nan'):.0f} | "
              f"{' / '.join(f'{v:.0f}' for _, v in evals)} |")
        ax.scatter(*zip(*train), s=3, alpha=0.4, label="training episodes")
        ax.plot(*zip(*evals), "o-", color="C3", label="evaluation (weights frozen)")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("env steps")
    axes[0][0].set_ylabel("return")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
