"""How much of a PointMaze did each run visit while training? The paper's exploration claim, measured.

    python benchmark/pointmaze_coverage.py runs/study/pointmaze --every 5000 --out docs/data/pointmaze

Reads every replay buffer (`{exp_name}_buffer.pt`, written beside the checkpoint with --save-model) under the
run trees whose env is a Gymnasium-Robotics PointMaze. The buffer holds the run's transitions in the order they
happened (the scripts skip only the autoreset pseudo-steps), so the coverage after n transitions is the share of
the maze's free cells that the point had been in by then. Prints a Markdown table (config, seed, coverage at
every --every transitions and at the last) and, with --out, writes it with a JSON and a picture of coverage
against env steps.
"""
import argparse
import glob
import json
import os
import sys

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dqs import gym_make  # noqa: E402


def position_slice(env) -> slice:
    """Where the point's (x, y) ("achieved_goal") sits in the flattened observation."""
    space = env.unwrapped.observation_space  # the Dict before FlattenObservation
    marked = {k: np.full(s.shape, float(k == "achieved_goal")) for k, s in space.spaces.items()}
    (idx,) = np.nonzero(gym.spaces.flatten(space, marked))
    return slice(int(idx[0]), int(idx[-1]) + 1)


def coverage_curve(positions: np.ndarray, maze, steps: list[int]) -> list[float]:
    """The share of free cells visited within the first n positions, for each n in steps."""
    free = {(i, j) for i, row in enumerate(maze.maze_map) for j, c in enumerate(row) if c != 1}
    cells = [tuple(maze.cell_xy_to_rowcol(p)) for p in positions]
    first_visit = {}
    for n, cell in enumerate(cells):
        first_visit.setdefault(cell, n)
    return [sum(1 for c, n0 in first_visit.items() if c in free and n0 < n) / len(free) for n in steps]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+")
    p.add_argument("--every", type=int, default=5000, help="the coverage after every this many transitions")
    p.add_argument("--out", default=None, help="folder for pointmaze_coverage.md, .json and .png")
    opts = p.parse_args()
    if opts.every <= 0:
        sys.exit(f"error: --every must be positive, got {opts.every}")
    rows, envs, visits = [], {}, {}
    for path in sorted(f for tree in opts.trees for f in glob.glob(os.path.join(tree, "**", "*_buffer.pt"), recursive=True)):
        ckpt_path = path.removesuffix("_buffer.pt") + ".pt"
        if not os.path.isfile(ckpt_path):
            continue
        meta = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if "PointMaze" not in str(meta.get("env_id")):
            continue
        env_id = meta["env_id"]
        if env_id not in envs:
            envs[env_id] = gym_make(env_id)
        env = envs[env_id]
        obs = torch.load(path, map_location="cpu", weights_only=True)["buffer"]["obs"].numpy()
        positions = obs[:, position_slice(env)]
        steps = list(range(opts.every, len(positions) + 1, opts.every))
        if not steps or steps[-1] < len(positions):  # and the whole run (episodes' ends leave out a step each)
            steps.append(len(positions))
        rows.append({"env_id": env_id, "config": meta["args"]["exp_name"], "seed": meta["args"]["seed"], "steps": steps,
                     "coverage": coverage_curve(positions, env.unwrapped.maze, steps)})
        visits[(env_id, rows[-1]["config"], rows[-1]["seed"])] = positions
    if not rows:
        sys.exit(f"error: no PointMaze replay buffer (*_buffer.pt beside its checkpoint) under {' '.join(opts.trees)}")
    lines = ["| env | config | seed | coverage of free cells at env steps |", "|---|---|---|---|"]
    for r in rows:
        cov = ", ".join(f"{s}: {c:.2f}" for s, c in zip(r["steps"], r["coverage"]))
        lines.append(f"| {r['env_id']} | {r['config']} | {r['seed']} | {cov} |")
    table = "\n".join(lines)
    print(table)
    if opts.out:
        os.makedirs(opts.out, exist_ok=True)
        with open(os.path.join(opts.out, "pointmaze_coverage.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(opts.out, "pointmaze_coverage.json"), "w") as f:
            json.dump(rows, f, indent=1)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colours = {}
        for r in rows:
            new = r["config"] not in colours
            colour = colours.setdefault(r["config"], f"C{len(colours)}")
            ax.plot(r["steps"], r["coverage"], color=colour, alpha=0.8, label=r["config"] if new else None)
        ax.set_xlabel("env steps")
        ax.set_ylabel("share of free maze cells visited")
        ax.set_title("PointMaze: coverage while training (one line per seed)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(opts.out, "pointmaze_coverage.png"), dpi=120)
        for env_id in sorted({r["env_id"] for r in rows}):
            runs = {k[1:]: v for k, v in visits.items() if k[0] == env_id}
            name = env_id.replace(":", "-").replace("/", "-")
            draw_visits(runs, envs[env_id].unwrapped.maze, env_id, os.path.join(opts.out, f"{name}_visits.png"))


def draw_visits(runs: dict, maze, env_id: str, picture: str):
    """Every position each run was in while training, over the maze's walls: one row per config, one column per seed."""
    configs = sorted({c for c, _ in runs})
    seeds = sorted({s for _, s in runs})
    fig, axes = plt.subplots(len(configs), len(seeds), figsize=(3.2 * len(seeds), 3.2 * len(configs) + 0.5), squeeze=False)
    half = maze.maze_size_scaling / 2
    for i, config in enumerate(configs):
        for j, seed in enumerate(seeds):
            ax = axes[i, j]
            ax.set_axis_off()
            if (config, seed) not in runs:
                continue
            for r, row in enumerate(maze.maze_map):
                for c, cell in enumerate(row):
                    x, y = maze.cell_rowcol_to_xy((r, c))
                    if cell == 1:
                        ax.add_patch(plt.Rectangle((x - half, y - half), 2 * half, 2 * half, color="0.35"))
                    elif cell in ("r", "g"):  # a fixed start (circle) or goal (star)
                        ax.plot(x, y, "o" if cell == "r" else "*", color="red", ms=9, zorder=3)
            xy = runs[(config, seed)]
            ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.2, c=np.arange(len(xy)), cmap="viridis", rasterized=True)
            ax.set_xlim(-maze.x_map_center, maze.x_map_center)
            ax.set_ylim(-maze.y_map_center, maze.y_map_center)
            ax.set_aspect("equal")
            ax.set_title(f"{config}, seed {seed}", fontsize=9)
    fig.suptitle(f"{env_id.split(':')[-1]}: positions while training\n(colour: env step, early dark; red: fixed start and goal)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(picture, dpi=100)


if __name__ == "__main__":
    main()
