# Tests of toy_bandit.py, to be merged into test_dqs.py (they use its Z and HERE).
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import toy_bandit

HERE = os.path.dirname(os.path.abspath(__file__))
Z = 4.0  # tolerances are Z standard errors: a correct implementation fails a check with p < 1e-4


# ---------------------------------------------------------------------------------------------
# Toy bandit: DQS against the exact Boltzmann policy, SAC's collapse
TOY_N = 1000  # samples per method: the tolerances below are Z binomial standard errors at this n
# Small enough for about 30 s on 2 CPU cores: the true reward stands in for the critic (the
# --true-reward diagnostic), so these checks are about the score training and the sampler.
TOY_CONFIG = dict(num_samples=TOY_N, iterations=1500, true_reward=True)


@pytest.fixture(scope="module")
def toy_result():
    """One small training run of both methods on the default reward, shared by the toy checks."""
    torch.set_num_threads(1)
    args = toy_bandit.Args(**TOY_CONFIG)
    reward_fn, centers = toy_bandit.make_reward(args.reward)
    samples = toy_bandit.run(args, reward_fn, progress=False)
    exact = toy_bandit.exact_policy(reward_fn, args.temperature)
    return {name: toy_bandit.distances(s, exact, centers) for name, s in samples.items()}


def test_toy_exact_policy_has_several_modes():
    """The default reward is a real test of mode coverage: at least three modes hold 10% of the mass."""
    reward_fn, centers = toy_bandit.make_reward(toy_bandit.Args().reward)
    exact = toy_bandit.exact_policy(reward_fn, toy_bandit.Args().temperature)
    mass = toy_bandit.mode_masses(exact[0], centers, exact[1])
    assert math.isclose(mass.sum().item(), 1.0, rel_tol=1e-9)
    assert (mass > 0.1).sum() >= 3


def test_toy_dqs_covers_every_mode_with_the_right_mass(toy_result):
    """Each mode's sampled mass is a binomial proportion: under the exact policy its standard error is
    sqrt(p (1 - p) / n). DQS must match every exact mode mass within Z of those (which also means every
    mode is covered: the smallest exact mass is well above Z standard errors)."""
    d = toy_result["dqs"]
    for k, (m, p) in enumerate(zip(d["mode_mass"], d["exact_mode_mass"])):
        se = math.sqrt(p * (1 - p) / TOY_N)
        assert p > 2 * Z * se, f"mode {k}: exact mass {p:.3f} too small for this n to test coverage"
        assert abs(m - p) < Z * se, f"mode {k}: DQS mass {m:.3f}, exact {p:.3f}, tolerance {Z * se:.3f}"


def test_toy_sac_collapses_to_one_mode(toy_result):
    """SAC's reverse-KL optimum sits on one mode. A policy on one mode k is at least 1 - p_k from the exact
    policy in total variation on the four quadrants (the Voronoi cells of the default centres), which
    the 20 x 20 bins refine, so the histogram TV is at least 1 - max_k p_k, less sampling noise.
    DQS, which covers the modes, must be closer."""
    sac, dqs_ = toy_result["sac"], toy_result["dqs"]
    p_max = max(sac["exact_mode_mass"])
    se = math.sqrt(p_max * (1 - p_max) / TOY_N)
    assert max(sac["mode_mass"]) > p_max + Z * se, f"SAC mode masses {sac['mode_mass']} do not show a collapse"
    assert sac["tv"] > 1 - p_max - Z * se
    assert dqs_["tv"] < sac["tv"]


def test_toy_bandit_cli_writes_picture_and_numbers(tmp_path):
    out = tmp_path / "toy.png"
    cmd = [sys.executable, "toy_bandit.py", "--iterations", "10", "--warmup", "200", "--num-samples", "1000",
           "--num-diffusion-steps", "5", "--num-mc-samples", "8", "--collect-every", "5", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 10_000
    numbers = json.loads(out.with_suffix(".json").read_text())
    for name in ("dqs", "sac", "target", "n exact"):
        assert 0.0 <= numbers[name]["tv"] <= 1.0
        assert math.isclose(sum(numbers[name]["mode_mass"]), 1.0, rel_tol=1e-9)
    assert numbers["args"]["num_samples"] == 1000
    assert "TV" in proc.stdout and "dqs" in proc.stdout


@pytest.mark.parametrize("flags, message", [(["--reward", "nope"], "unknown --reward"),
                                            (["--iterations", "0"], "--iterations must be positive"),
                                            (["--num-samples", "-5"], "--num-samples must be positive")])
def test_toy_bandit_bad_input_is_one_line(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "toy_bandit.py", "--out", str(tmp_path / "x.png")] + flags, cwd=HERE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert not (tmp_path / "x.png").exists()
