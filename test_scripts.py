"""Tests of the tools around the algorithm: the paper's extra tasks (benchmark/paper_envs.py) and their readers
(benchmark/gmm_modes.py, benchmark/pointmaze_coverage.py), the diagnostics and timings of docs/scripts/ and
benchmark/speed.py, the learning-benchmark runner (benchmark/learning.py), and the docs' commands themselves.
The claims about DQS and SAC are in test_dqs.py, whose helpers for running a script this file borrows.

    pytest test_dqs.py test_scripts.py
"""

import json
import math
import os
import re
import subprocess

import gymnasium as gym
import numpy as np
import pytest
import torch

import dqs

from test_dqs import COMMON, HERE, TINY, Z, assert_clean_error, read_run, run_script

# ---------------------------------------------------------------------------------------------
# The paper's own tasks (benchmark/paper_envs.py) and the scripts that read their runs
def test_gmm_navigation_rewards_the_mixture_log_density_after_a_unit_step():
    """The paper's 2-D task: a step of length 1 in the action's direction, clipped to the box, rewarded by log p of
    the 40-mode mixture where it lands (checked against torch's mixture distribution); 100 steps an episode."""
    from benchmark.paper_envs import GMM40_MEANS
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(40, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(torch.as_tensor(GMM40_MEANS), torch.ones(40, 2, dtype=torch.float64)), 1))
    env = gym.make("benchmark.paper_envs:GMMNavigation-v0")
    for start, action, end in [((0.0, 0.0), (0.3, 0.4), (0.6, 0.8)), ((-0.3, 21.0), (0.0, -0.01), (-0.3, 20.0)),
                               ((49.5, -49.8), (1.0, -1.0), (50.0, -50.0)), ((36.0, -37.0), (0.0, 0.0), (36.0, -37.0))]:
        env.reset(options={"state": start})
        obs, reward, terminated, truncated, _ = env.step(np.array(action, dtype=np.float32))
        np.testing.assert_allclose(obs, end, atol=1e-5)
        # the env rewards its float64 state, the check uses the float32 observation: |s| <= 50 rounds by <= 4e-6,
        # times |grad log p| <= ~70 in the box, 3e-4 at most
        assert reward == pytest.approx(float(mixture.log_prob(torch.tensor(obs, dtype=torch.float64))), abs=1e-3)
        assert not terminated and not truncated
    obs, _ = env.reset(seed=0)
    assert np.all(np.abs(obs) <= 50.0)
    steps = 1
    while not env.step(env.action_space.sample())[3]:
        steps += 1
    assert steps == 100


def test_the_fixed_start_medium_maze_starts_and_ends_in_opposite_corners():
    """PointMaze_MediumFixed-v0: every reset puts the point in the top-left free cell and the goal in the bottom-right
    one (the v3 mazes draw both at random); the reward is 0 away from the goal, 1 at it, and the episode ends there."""
    env = gym.make("benchmark.paper_envs:PointMaze_MediumFixed-v0")
    maze = env.unwrapped.maze
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        achieved, goal = obs["achieved_goal"], obs["desired_goal"]
        assert tuple(maze.cell_xy_to_rowcol(achieved)) == (1, 1) and tuple(maze.cell_xy_to_rowcol(goal)) == (6, 6)
        _, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
        assert reward == 0.0 and not terminated and not info["success"]
    point = env.unwrapped.point_env
    point.set_state(np.asarray(goal, dtype=np.float64), np.zeros(2))
    _, reward, terminated, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert reward == 1.0 and terminated and info["success"]
    assert env.spec.max_episode_steps == 600


def test_the_papers_tasks_run_by_module_id_and_pointmaze_logs_its_success_rate(tmp_path):
    """`module:id` env ids: the GMM task (DQS) and Gymnasium-Robotics' sparse PointMaze (SAC, dict observations
    flattened: 2 + 2 + 4), whose evaluations also log the share of episodes that reached the goal."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    for script, env_id, obs_dim in [("dqs.py", "benchmark.paper_envs:GMMNavigation-v0", 2),
                                    ("sac_baseline.py", "gymnasium_robotics:PointMaze_UMaze-v3", 8)]:
        cwd = tmp_path / script
        cwd.mkdir()
        out = run_script(script, *COMMON, *TINY[script], "--env-id", env_id, "--total-timesteps", "150", "--eval-episodes", "1",
                         "--save-model", cwd=cwd)
        assert out.returncode == 0, out.stderr[-2000:]
        run_dir, summary = read_run(cwd)
        assert summary["global_step"] == 150 and summary["env_id"] == env_id
        assert ":" not in os.path.basename(run_dir)  # module:id's colon is not a legal path character on Windows
        ckpt = torch.load(os.path.join(run_dir, f"{script[:-3]}.pt"), weights_only=True)
        assert ckpt["qf1"]["fc1.weight"].shape[1] == obs_dim + 2
        events = EventAccumulator(run_dir)
        events.Reload()
        assert ("eval/success_rate" in events.Tags()["scalars"]) == ("PointMaze" in env_id)
    # the learning runner aggregates the success rate beside the return; the maze coverage reads the PointMaze run's
    # replay buffer; the mode count runs on the GMM checkpoint
    learning = load_learning()
    runs = {r["env_id"]: learning.aggregate_config([r], None) for r in learning.find_runs(str(tmp_path))}
    (success,) = runs["gymnasium_robotics:PointMaze_UMaze-v3"]["success_curve"]
    assert success["step"] == 150 and 0.0 <= success["mean"] <= 1.0
    assert "success_curve" not in runs["benchmark.paper_envs:GMMNavigation-v0"]
    out = run_script(os.path.join("benchmark", "pointmaze_coverage.py"), str(tmp_path), "--every", "50", "--out", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads((tmp_path / "pointmaze_coverage.json").read_text())
    assert row["steps"] == [50, 100, 150] and 0.0 < row["coverage"][0] <= row["coverage"][1] <= row["coverage"][2] <= 1.0
    assert (tmp_path / "gymnasium_robotics-PointMaze_UMaze-v3_visits.png").is_file()
    out = run_script(os.path.join("benchmark", "gmm_modes.py"), str(tmp_path / "dqs.py"), "--episodes", "3", "--out", str(tmp_path),
                     "--picture", str(tmp_path / "gmm.png"),
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads((tmp_path / "gmm_modes.json").read_text())["results"]
    for start in row["starts"]:
        assert sum(start["counts"]) == 3 and 1 <= start["n_modes"] <= 3 and 0.0 <= start["entropy"] <= math.log(3) + 1e-9
    # how flat the GMM run's critic is against T: one table row, the box share of exp(Q/T) in [1/8, 1]
    out = run_script(os.path.join("docs", "scripts", "critic_flatness.py"), str(tmp_path / "dqs.py"), "--states", "5", "--actions", "8",
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = [line for line in out.stdout.splitlines() if "GMMNavigation" in line]
    share = float(row.split("|")[-2].split()[0])
    assert 1 / 8 - 1e-3 <= share <= 1.0 + 1e-3


# ---------------------------------------------------------------------------------------------
# Runners built on dqs.py: the diagnostics of docs/ and the speed benchmark
def test_oracle_shadow_diagnostic_reports(tmp_path):
    # docs/scripts/oracle_shadow.py is the diagnosis of DQS on InvertedPendulum (docs/diagnosis.md): built on dqs's
    # own pieces, it must run and report the shadow score network's fidelity
    out = run_script(os.path.join("docs", "scripts", "oracle_shadow.py"), *COMMON, *TINY["dqs.py"], "--total-timesteps", "200",
                     "--shadow", "--shadow-every", "25", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    reports = [line for line in out.stdout.splitlines() if line.startswith("shadow step")]
    assert len(reports) >= 2, reports  # updates start once the buffer holds 100 transitions, before step 150
    for line in reports:
        w1 = float(line.split("w1 ")[1].split()[0])
        assert 0.0 <= w1 <= 2.0, line  # a Wasserstein-1 distance between two laws on [-1, 1]


def test_offline_diagnostics_run_on_a_dqs_checkpoint(tmp_path):
    # docs/scripts/score_lag.py is docs/diagnosis.md's offline measurement of the score target and network; tiny sizes
    out = run_script("dqs.py", *COMMON, *TINY["dqs.py"], "--total-timesteps", "150", "--save-model", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    ckpt = os.path.join(read_run(tmp_path)[0], "dqs.pt")
    out = run_script(os.path.join("docs", "scripts", "score_lag.py"), ckpt, "--states", "40", "--eval-states", "4",
                     "--samples-per-state", "8", "--train-steps", "10", "--eval-every", "10", "--steps", "5",
                     "--targets", "exact,grad4,blend4", "--target-error-k", "4", "--critic-sampler-k", "4", "--threads", "1",
                     cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if "w1 " in line]
    # the exact-score sampler, the critic-driven sampler with each of its two estimators, one row per trained target
    assert len(rows) == 1 + 2 + 3, out.stdout
    for line in rows:
        assert 0.0 <= float(line.split("w1 ")[1].split()[0]) <= 2.0, line
    assert sum("target error" in line for line in out.stdout.splitlines()) == 4, out.stdout  # grad, noise, blend, cv

    # docs/scripts/eval_checkpoint.py resamples the checkpoint's critics with another estimator and switch (an untrained
    # InvertedPendulum policy: short episodes); docs/scripts/acting_cost.py times the estimators at the task's shapes
    out = run_script(os.path.join("docs", "scripts", "eval_checkpoint.py"), os.path.dirname(ckpt), "--episodes", "1",
                     "--acting-estimate", "blend", "--clean-score-until", "0.5", "--acting-mc-samples", "4", cwd=tmp_path)
    assert out.returncode == 0 and "acting_estimate blend" in out.stdout, out.stderr[-2000:]
    out = run_script(os.path.join("docs", "scripts", "acting_cost.py"), "--env-id", "InvertedPendulum-v4", "--repeats", "2",
                     "--acting-mc-samples", "4", "--num-diffusion-steps", "3", cwd=tmp_path)
    assert out.returncode == 0 and "refit" in out.stdout and "blend" in out.stdout, out.stderr[-2000:]

    # benchmark/speed.py --precision measures float32 against bf16 on the same checkpoint's critics
    out = run_script(os.path.join("benchmark", "speed.py"), "--precision", "--repeats", "1", "--ks", "4", "--checkpoint", ckpt, "--threads", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    product_error = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.stdout.splitlines()
                     if line.startswith(("| highest |", "| medium |", "| autocast |"))}
    # float32 rounds at 6e-8 relative, bf16 at 4e-3: the table must tell the two apart
    assert product_error["highest"] < 1e-5 and product_error["autocast"] > 1e-4, product_error
    error_rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith(("| 4 | 0.1 |", "| 4 | 0.5 |", "| 4 | 0.9 |"))]
    assert len(error_rows) == 3, out.stdout  # K = 4 at t = 0.1, 0.5, 0.9
    assert all(np.isfinite(float(x)) and float(x) >= 0 for row in error_rows for x in row[3:-1]), out.stdout

# ---------------------------------------------------------------------------------------------
# benchmark/learning.py: the learning-benchmark runner (grid, resume, launchers, aggregation)
def load_learning():
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning", os.path.join(HERE, "benchmark", "learning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_learning(*flags, cwd, timeout=240):
    return run_script(os.path.join("benchmark", "learning.py"), *flags, cwd=cwd, timeout=timeout)


GRID = ["--env-ids", "Pendulum-v1", "--total-timesteps", "200", "--eval-every", "100", "--eval-episodes", "1",
        "--common-flags=--learning-starts 50 --batch-size 32 --no-cuda"]


def test_learning_grid_local_aggregates_and_skips_finished(tmp_path):
    flags = ["--config", "sac=sac_baseline.py", *GRID, "--seeds", "1", "2", "--jobs", "2", "--out", str(tmp_path / "grid")]
    out = run_learning(*flags, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.count("launched ") == 2, out.stdout
    grid = tmp_path / "grid"
    assert (grid / "Pendulum-v1.png").stat().st_size > 10_000
    table = (grid / "Pendulum-v1.md").read_text()
    assert "| sac | 2/2 |" in table and "--total-timesteps 200" in table
    # the aggregated final mean is the mean of the runs' own final eval returns (TensorBoard stores float32)
    summaries = [json.loads(p.read_text()) for p in grid.glob("Pendulum-v1/sac/seed*/runs/*/summary.json")]
    assert len(summaries) == 2 and all(s["global_step"] == 200 and s["stopped"] is None for s in summaries)
    sac = json.loads((grid / "aggregate.json").read_text())["tasks"]["Pendulum-v1"]["sac"]
    expected = np.mean([s["eval_return_mean"] for s in summaries])
    assert math.isclose(sac["final_mean"], expected, rel_tol=1e-6), (sac["final_mean"], expected)
    assert sac["final_ci_low"] <= sac["final_mean"] <= sac["final_ci_high"]
    assert [p["step"] for p in sac["curve"]] == [100, 200] and sac["env_steps"] == [200]
    # one update per step from the step whose transition fills the buffer to max(learning_starts, batch) = 50
    assert sac["num_updates"] == [200 - 50 + 1]
    # a second invocation of the finished grid launches nothing
    out = run_learning(*flags, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("skipped ") == 2 and "launched " not in out.stdout and "launching 0" in out.stdout
    # and a larger budget would resume each run from its own checkpoint
    learning = load_learning()
    args = learning.Args(config=("sac=sac_baseline.py",), env_ids=("Pendulum-v1",), seeds=(1, 2), out=str(grid),
                         total_timesteps=300)
    for run in learning.make_grid(args):
        state, ckpt = learning.run_state(run)
        assert state == "resume" and ckpt.startswith(run.workdir) and ckpt.endswith("/sac.pt")


def test_learning_grid_submitit_local_reports_failed_run(tmp_path):
    # two runs through submitit's local executor: DQS on Pendulum, and one that fails (unknown env id)
    flags = ["--config", "dqs_tiny=dqs.py --num-mc-samples 4 --num-diffusion-steps 3", *GRID, "--seeds", "1",
             "--env-ids", "Pendulum-v1", "NoSuchEnv-v0", "--launcher", "submitit-local", "--out", str(tmp_path / "grid")]
    out = run_learning(*flags, cwd=tmp_path)
    assert_clean_error(out, "1 of 2 runs failed")
    assert "launched dqs_tiny Pendulum-v1 seed 1" in out.stdout and "FAILED   dqs_tiny NoSuchEnv-v0 seed 1" in out.stdout
    log = tmp_path / "grid" / "NoSuchEnv-v0" / "dqs_tiny" / "seed1" / "run.log"
    assert str(log) in out.stderr and "NoSuchEnv-v0" in log.read_text().strip().splitlines()[-1]
    assert list((tmp_path / "grid" / "submitit").glob("*_log.out"))  # it really went through submitit
    # the rest is still aggregated
    dqs_ = json.loads((tmp_path / "grid" / "aggregate.json").read_text())["tasks"]["Pendulum-v1"]["dqs_tiny"]
    assert [p["step"] for p in dqs_["curve"]] == [100, 200] and dqs_["seeds_finished"] == 1


def test_learning_bootstrap_interval():
    learning = load_learning()
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, size=50)
    lo, hi = learning.bootstrap_ci(x)
    assert lo < x.mean() < hi
    lo5, hi5 = learning.bootstrap_ci(x[:5])
    assert hi - lo < hi5 - lo5  # more seeds, a narrower interval (about sqrt(10) times here)
    # coverage of the true mean for n = 30 normal seeds. The percentile interval is about
    # mean +- 1.96 s_n / sqrt(n) with s_n the 1/n standard deviation, i.e. |t_29| < 1.96 sqrt(29/30) = 1.927,
    # whose probability is 0.936 (4M draws of t_29), not 0.95: that is the claim, within Z binomial standard errors.
    trials, n, expected = 400, 30, 0.936
    covered = 0
    for i in range(trials):
        lo, hi = learning.bootstrap_ci(rng.normal(0.0, 1.0, size=n), resamples=2000, seed=i)
        covered += lo <= 0.0 <= hi
    se = math.sqrt(expected * (1 - expected) / trials)
    assert abs(covered / trials - expected) < Z * se, (covered / trials, expected, se)
    assert learning.iqm([1, 2, 3, 4, 100]) == 3.0 and math.isnan(learning.iqm([1, 2, 3, 4]))


@pytest.mark.parametrize("flags, words", [
    (["--config", "x=no_such_script.py"], ["no_such_script.py", "not found"]),
    (["--config", "sac=sac_baseline.py", "--seeds"], ["empty grid"]),
    (["--aggregate-only"], ["no run folders"]),
])
def test_learning_bad_input(flags, words, tmp_path):
    out = run_learning(*flags, "--out", str(tmp_path / "grid"), cwd=tmp_path)
    assert_clean_error(out, *words)
    assert not (tmp_path / "grid").exists()  # nothing launched, nothing written

# docs/scripts/k_table.py, the table that chooses K
def fake_checkpoint(path, obs_dim, act_dim, rows, seed):
    """A --save-model checkpoint of untrained critics and a random buffer, as docs/scripts read them."""
    torch.manual_seed(seed)
    state = {"algo": "sac", "env_id": f"random-{act_dim}d", "step": 0}
    state.update({name: dqs.SoftQNetwork(obs_dim, act_dim).state_dict() for name in ("qf1", "qf2")})
    torch.save(state, path)
    buffer = {"ptr": rows, "size": rows, "obs": torch.randn(rows, obs_dim), "actions": 2 * torch.rand(rows, act_dim) - 1}
    torch.save({"step": 0, "buffer": buffer}, str(path).removesuffix(".pt") + "_buffer.pt")
    return str(path)


def test_k_table_reference_and_rows(tmp_path):
    # docs/scripts/k_table.py on untrained critics at tiny sizes: with a 1-D action its quadrature reference must agree
    # with the independent blend at K = 4000 within that blend's own noise (a wrong kernel, Jacobian or sign fails by
    # orders of magnitude), and 16 times the samples must cut the blend's error
    one = fake_checkpoint(tmp_path / "one.pt", 4, 1, 64, 0)
    two = fake_checkpoint(tmp_path / "two.pt", 5, 2, 64, 1)
    out = run_script(os.path.join("docs", "scripts", "k_table.py"), one, two, "--states", "4", "--ks", "4,64", "--sk-k", "256",
                     "--ref-k", "4000", "--repeats", "2", "--acting-ks", "4,16", "--acting-base", "16", "--policy-states", "2",
                     "--policy-samples", "32", "--num-diffusion-steps", "10", "--check-states", "4", "--grid-points", "2001",
                     "--out", str(tmp_path / "k"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    with open(tmp_path / "k.json") as f:
        one_d, two_d = json.load(f)["results"]
    assert max(one_d["quadrature_forms_rel_diff"]) < 1e-2, one_d  # the two quadrature forms: O(du) apart
    for q in one_d["check"]["quarters"]:
        assert q["quad_vs_blend_rms"] <= Z * q["blend_floor_rms"] + 1e-4 * q["ref_rms"], one_d["check"]
    for r in (one_d, two_d):
        blend = {row["k"]: row["quarters"][2]["rms"] for row in r["table"] if row["form"] == "blend"}  # t in [0.5, 0.75)
        assert blend[64] < blend[4], r["table"]
        assert all(0.0 < c["ratio"] < 10.0 for c in [row["std_ratio"] for row in r["acting"] if "std_ratio" in row]), r["acting"]
    # the multi-D reference is far less noisy than the rows it judges
    blend4 = [row for row in two_d["table"] if row["form"] == "blend" and row["k"] == 4][0]["quarters"]
    assert all(f["rms"] < c["rms"] for f, c in zip(two_d["floor"], blend4)), (two_d["floor"], blend4)
    text = open(tmp_path / "k.md").read()
    assert text.startswith("<!-- OMP_NUM_THREADS=") and "S_K (grad, the paper's), K = 256" in text and "Picks:" in text


def test_temperature_fixed_point_script_iterates_the_rule_from_every_start(tmp_path):
    # docs/scripts/temperature_fixed_point.py on an untrained 1-D critic: it reports the rule's limit from four starts
    out = run_script(os.path.join("docs", "scripts", "temperature_fixed_point.py"), fake_checkpoint(tmp_path / "one.pt", 4, 1, 64, 0),
                     "--states", "16", "--grid", "101", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    limits = [float(re.search(r"T -> ([0-9.e+-]+),", line)[1]) for line in out.stdout.splitlines() if "T ->" in line]
    assert len(limits) == 4 and all(t > 0 for t in limits)


# ---------------------------------------------------------------------------------------------
# The docs' commands: output folders relative to the checkout
# The roots are joined here rather than written out as paths, so that this file does not match itself.
MACHINE_ROOTS = ("home", "root", "Users", "work", "tmp")
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:" + "|".join(MACHINE_ROOTS) + r")/")


def test_no_tracked_file_names_a_machines_absolute_folder():
    """A command copied from the README, docs/ or a script's usage line writes inside the checkout (e.g. runs/study/),
    never under one machine's home, work or temporary folder. Binary files (pictures) are not read."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=HERE, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    found = []
    for path in listed.stdout.decode().split("\0"):
        full = os.path.join(HERE, path)
        if not path or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{path}:{n}: {line.strip()[:120]}" for n, line in enumerate(text.splitlines(), 1) if ABSOLUTE_PATH.search(line)]
    assert not found, "\n".join(found[:20]) + (f"\n... and {len(found) - 20} more" if len(found) > 20 else "")
