"""Which modes do the trained policies reach on the GMM navigation task? The paper's multimodality claim, measured.

    python benchmark/gmm_modes.py runs/study/gmm --episodes 100 --out docs/data/gmm --picture docs/img/gmm_modes.png

Every final checkpoint (`{exp_name}.pt`, written with --save-model) under the run trees is loaded, its policy
rebuilt as the run acted (DQS: its --acting-score sampler, one draw per state; SAC: one draw of its Gaussian
policy, the way it acts in training, and its evaluation's deterministic tanh(mean)), and run for --episodes
episodes of 100 steps from each fixed start state. Each episode ends nearest to one of the 40 means; per start
state the table gives how many modes were reached, the entropy (nats) of that distribution over the episodes,
and the mean return. The picture draws the trajectories from every start over the mixture's log density,
coloured by episode (the first 30 of each start): one row per policy, one column per seed. DQS runs are
named with their temperature, so trees run at different T compare in one table and picture.
"""
import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "docs", "scripts"))
import sac_baseline  # noqa: E402
from eval_checkpoint import load_policy  # noqa: E402
from benchmark.paper_envs import BOX, EPISODE_STEPS, GMM40_MEANS, GMMNavigation, gmm_log_density, nearest_mode  # noqa: E402

STARTS = ((0.0, 0.0), (-20.0, 25.0), (10.0, -15.0), (30.0, 0.0))  # between several modes each
DRAWN = 30  # episodes drawn per start


def temperature_label(args: dict) -> str:
    """A fixed T by its value; T that follows the critic by its scale (dqs.py's --temperature-scale)."""
    if args.get("temperature_scale") is not None:
        return f"T = {args['temperature_scale']:g} x RMS dQ/da"
    return f"T = {args['temperature']:g}"


def dqs_policy(state: dict):
    """The acting policy of a dqs checkpoint, obs (B, 2) -> actions (B, 2) in [-1, 1], as dqs.py acted at its end."""
    return load_policy(state)[0]


def sac_policies(state: dict):
    actor = sac_baseline.Actor(2, 2)
    actor.load_state_dict(state["actor"])
    return {"one draw": lambda obs: actor.get_action(obs)[0], "tanh(mean)": lambda obs: actor.get_action(obs)[2]}


@torch.no_grad()
def rollouts(act, start, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Trajectories (episodes, 101, 2) and returns (episodes,) of `episodes` episodes from one start, stepped together."""
    envs = [GMMNavigation() for _ in range(episodes)]
    obs = np.stack([env.reset(options={"state": start})[0] for env in envs])
    path, returns = [obs], np.zeros(episodes)
    for _ in range(EPISODE_STEPS):
        actions = act(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        steps = [env.step(a) for env, a in zip(envs, actions)]
        obs = np.stack([s[0] for s in steps])
        returns += [s[1] for s in steps]
        path.append(obs)
    return np.stack(path, 1), returns


def mode_stats(final: np.ndarray) -> dict:
    modes, counts = np.unique(nearest_mode(final), return_counts=True)
    p = counts / counts.sum()
    return {"modes": modes.tolist(), "counts": counts.tolist(), "n_modes": len(modes), "entropy": float(-(p * np.log(p)).sum()) + 0.0}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="torch seed of the policies' noise")
    p.add_argument("--out", default=None, help="folder for gmm_modes.md and gmm_modes.json")
    p.add_argument("--picture", default=None, help="path of the trajectory picture (png)")
    opts = p.parse_args()
    if opts.episodes <= 0:
        sys.exit(f"error: --episodes must be positive, got {opts.episodes}")
    paths = sorted(f for tree in opts.trees for f in glob.glob(os.path.join(tree, "**", "*.pt"), recursive=True)
                   if not f.endswith(("_best.pt", "_buffer.pt")))
    if not paths:
        sys.exit(f"error: no checkpoint (*.pt written with --save-model) under {' '.join(opts.trees)}")
    torch.set_num_threads(1)
    results, paths_drawn = [], {}
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not str(state.get("env_id", "")).endswith("GMMNavigation-v0"):
            continue
        policies = {f"DQS, {temperature_label(state['args'])}": dqs_policy(state)} if state["algo"] == "dqs" else \
            {f"SAC, {k}": v for k, v in sac_policies(state).items()}
        for name, act in policies.items():
            torch.manual_seed(opts.seed)
            row = {"policy": name, "seed": state["args"]["seed"], "step": state["step"], "starts": []}
            for start in STARTS:
                path_xy, returns = rollouts(act, start, opts.episodes)
                row["starts"].append({"start": start, "return_mean": float(returns.mean()), **mode_stats(path_xy[:, -1])})
                paths_drawn.setdefault(name, {}).setdefault(row["seed"], []).append(path_xy)
            results.append(row)
            print(f"{name} seed {row['seed']}: modes reached per start {[s['n_modes'] for s in row['starts']]}, "
                  f"entropy {[round(s['entropy'], 2) for s in row['starts']]}", flush=True)

    names = sorted({r["policy"] for r in results}, key=lambda n: (not n.startswith("DQS"), n))
    if opts.out:
        write_outputs(results, opts.episodes, opts.out)
    else:
        print(mode_table(results))
    if opts.picture:
        draw(paths_drawn, names, opts.picture)


def mode_table(results: list) -> str:
    """One Markdown row per policy: its seeds' modes reached at each start, then means over starts and seeds."""
    names = sorted({r["policy"] for r in results}, key=lambda n: (not n.startswith("DQS"), n))
    lines = [f"| policy | seeds | step | " + " | ".join(f"start {s}" for s in STARTS) + " | modes per start | entropy (nats) | return |",
             "|---" * (6 + len(STARTS)) + "|"]
    for name in names:
        rows = sorted((r for r in results if r["policy"] == name), key=lambda r: r["seed"])
        per_start = [" / ".join(str(r["starts"][i]["n_modes"]) for r in rows) for i in range(len(STARTS))]
        n_modes = np.array([[s["n_modes"] for s in r["starts"]] for r in rows], dtype=float)
        entropy = np.array([[s["entropy"] for s in r["starts"]] for r in rows])
        ret = np.array([[s["return_mean"] for s in r["starts"]] for r in rows])
        lines.append(f"| {name} | {', '.join(str(r['seed']) for r in rows)} | {rows[0]['step']} | " + " | ".join(per_start) +
                     f" | {n_modes.mean():.2f} [{n_modes.mean(1).min():.2f}, {n_modes.mean(1).max():.2f}] "
                     f"| {entropy.mean():.2f} [{entropy.mean(1).min():.2f}, {entropy.mean(1).max():.2f}] | {ret.mean():.0f} |")
    return "\n".join(lines)


def write_outputs(results: list, episodes: int, out: str):
    """gmm_modes.json (every seed's counts per start) and gmm_modes.md (the table) in the folder out."""
    table = mode_table(results)
    print(table)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gmm_modes.json"), "w") as f:
        json.dump({"episodes": episodes, "starts": STARTS, "results": results}, f, indent=1)
    with open(os.path.join(out, "gmm_modes.md"), "w") as f:
        f.write(f"Modes reached from each start ({episodes} episodes of {EPISODE_STEPS} steps; one entry per seed, "
                "seeds separated by /), then the mean over starts and seeds [lowest, highest seed].\n\n" + table + "\n")


def draw(paths_drawn: dict, names: list, picture: str):
    grid = np.linspace(-BOX, BOX, 300)
    gx, gy = np.meshgrid(grid, grid)
    density = gmm_log_density(np.stack([gx, gy], -1))
    n_seeds = max(len(paths_drawn[name]) for name in names)
    fig, axes = plt.subplots(len(names), n_seeds, figsize=(4.2 * n_seeds, 4.2 * len(names) + 0.6), squeeze=False)
    for row, name in zip(axes, names):
        for ax in row[len(paths_drawn[name]):]:
            ax.axis("off")
        for ax, seed in zip(row, sorted(paths_drawn[name])):
            ax.contourf(gx, gy, np.maximum(density, -60), levels=30, cmap="Greys")
            ax.scatter(*GMM40_MEANS.T, s=6, c="k")
            for path_xy in paths_drawn[name][seed]:
                path_xy = path_xy[:DRAWN]
                colours = plt.cm.viridis(np.linspace(0, 1, len(path_xy)))
                for xy, c in zip(path_xy, colours):
                    ax.plot(xy[:, 0], xy[:, 1], lw=0.6, alpha=0.5, color=c)
                ax.plot(*path_xy[0, 0], "r*", ms=10)
            ax.set_title(f"{name}, seed {seed}", fontsize=10)
            ax.set_xlim(-BOX, BOX)
            ax.set_ylim(-BOX, BOX)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    fig.suptitle("GMM navigation: paths from 4 fixed starts (red stars), coloured by episode, over log p")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    os.makedirs(os.path.dirname(os.path.abspath(picture)), exist_ok=True)
    fig.savefig(picture, dpi=90)

if __name__ == "__main__":
    main()
