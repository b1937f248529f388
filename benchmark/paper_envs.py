"""The paper's own toy task as a Gymnasium env: 2-D navigation on a 40-mode Gaussian mixture.

    python dqs.py --env-id benchmark.paper_envs:GMMNavigation-v0
    python sac_baseline.py --env-id benchmark.paper_envs:GMMNavigation-v0

Gymnasium's `module:id` form imports this module, whose import registers the env. The task, as the DQS
authors define it: the state is a point in [-50, 50]^2, drawn uniformly at reset; the action in
[-1, 1]^2 is scaled to unit length and added to the state, which is clipped to the box; the reward is
the log density of the new state under an equal-weight mixture of 40 unit-variance Gaussians (the
40-mode mixture of the FAB and iDEM sampling benchmarks); an episode lasts 100 steps. A Gaussian
policy tends to commit to one mode from a given start; the paper uses the task to show DQS reaching
several.

`env.reset(options={"state": (x, y)})` starts from a chosen point (for fixed-start evaluations).

It also registers `PointMaze_MediumFixed-v0`, a test of exploration for the paper's sparse PointMaze:
Gymnasium-Robotics' medium maze (8 x 8 cells, 600 steps per episode) with the start fixed in the
top-left free cell and the goal in the bottom-right one, sparse reward (1 at the goal), and the
episode ending there. The registered `PointMaze_*-v3` tasks draw both the start and the goal at random
every episode, so resets alone carry the point to every cell and the share of cells a run visits
says nothing about how it explores; from a fixed start it does.

    python dqs.py --env-id benchmark.paper_envs:PointMaze_MediumFixed-v0
"""
import gymnasium as gym
import numpy as np

# The mixture's 40 means (x, y), the 40-mode GMM of the FAB / iDEM sampling benchmarks.
GMM40_MEANS = np.array([
    (-0.2995, 21.4577), (-32.9218, -29.4376), (-15.4062, 10.7263), (-0.7925, 31.7156),
    (-3.5498, 10.5845), (-12.0885, -7.8626), (-38.2139, -26.4913), (-16.4889, 1.4817),
    (15.8134, 24.0009), (-27.1176, -17.4185), (14.5287, 33.2155), (-8.2320, 29.9325),
    (-6.4473, 4.2326), (36.2190, -37.1068), (-25.1815, -10.1266), (-15.5920, 34.5600),
    (-25.9272, -18.4133), (-27.9456, -37.4624), (-23.3496, 34.3839), (17.8487, 19.3869),
    (2.1037, -20.5073), (6.7674, -37.3478), (-28.9026, -20.6212), (25.2375, 23.4529),
    (-17.7398, -1.4433), (25.5824, 39.7653), (15.8753, 5.4037), (26.8195, -23.5521),
    (7.4538, -31.0122), (-27.7234, -20.6633), (18.0989, 16.0864), (-23.6941, 12.0843),
    (21.9589, -5.0487), (1.5273, 9.2682), (24.8151, 38.4078), (-30.8249, -14.6588),
    (15.7204, 33.1420), (34.8083, 35.2943), (7.9606, -34.7833), (3.6797, -25.0242),
])
BOX = 50.0
EPISODE_STEPS = 100


def gmm_log_density(points: np.ndarray) -> np.ndarray:
    """log p(s) of points (..., 2) under the equal-weight, unit-variance 40-mode mixture."""
    sq = ((points[..., None, :] - GMM40_MEANS) ** 2).sum(-1)  # (..., 40) squared distances to the means
    top = -0.5 * sq.min(-1)
    log_sum = top + np.log(np.exp(-0.5 * sq - top[..., None]).sum(-1))  # log sum_i exp(-|s - mu_i|^2 / 2), stably
    return log_sum - np.log(len(GMM40_MEANS)) - np.log(2.0 * np.pi)


def nearest_mode(points: np.ndarray) -> np.ndarray:
    """The index of the mean nearest to each point (..., 2)."""
    return ((points[..., None, :] - GMM40_MEANS) ** 2).sum(-1).argmin(-1)


class GMMNavigation(gym.Env):
    """Moves one unit per step in the action's direction; rewarded by the mixture's log density where it lands."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(-BOX, BOX, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options is not None and "state" in options:
            self.state = np.clip(np.asarray(options["state"], dtype=np.float64), -BOX, BOX)
        else:
            self.state = self.np_random.uniform(-BOX, BOX, 2)
        return self.state.astype(np.float32), {}

    def step(self, action):
        direction = np.asarray(action, dtype=np.float64)
        direction = direction / (np.linalg.norm(direction) + 1e-8)
        self.state = np.clip(self.state + direction, -BOX, BOX)
        reward = float(gmm_log_density(self.state))
        return self.state.astype(np.float32), reward, False, False, {"mode": int(nearest_mode(self.state))}


gym.register("GMMNavigation-v0", entry_point=GMMNavigation, max_episode_steps=EPISODE_STEPS)


# Gymnasium-Robotics' medium maze (1 = wall) with its reset cell "r" and goal cell "g" fixed at opposite
# corners; the shortest path between them crosses 10 cells. The entry point is a string, so
# gymnasium_robotics is imported only when this env is made.
MEDIUM_MAZE_FIXED = [
    [1, 1, 1, 1, 1, 1, 1, 1],
    [1, "r", 0, 1, 1, 0, 0, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 1, 0, 0, 0, 1, 1, 1],
    [1, 0, 0, 1, 0, 0, 0, 1],
    [1, 0, 1, 0, 0, 1, 0, 1],
    [1, 0, 0, 0, 1, 0, "g", 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
]
gym.register("PointMaze_MediumFixed-v0", entry_point="gymnasium_robotics.envs.maze.point_maze:PointMazeEnv",
             kwargs={"maze_map": MEDIUM_MAZE_FIXED, "reward_type": "sparse", "continuing_task": False},
             max_episode_steps=600)
