"""A run stopped by SIGTERM and resumed from its checkpoint, beside the unbroken run of the same seed.

    python docs/scripts/resume_curve.py --script sac_baseline.py --env-id Pendulum-v1 --total-timesteps 8000 --stop-after-s 40

Runs the script twice in a scratch folder, one thread each, one after the other: once to the end, and
once stopped with SIGTERM after --stop-after-s seconds (a cluster's preemption) and then continued with
`--resume` on its checkpoint (networks, optimizers, replay buffer, random states). Prints both runs'
evaluation returns per step and draws them in one picture (--out). The resumed run's curve should go on
where it stopped, not fall back and wait for a refilled buffer.
"""
import argparse
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def evals(run_dir):
    events = EventAccumulator(run_dir)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("eval/episodic_return")]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--script", default="sac_baseline.py")
    p.add_argument("--env-id", default="Pendulum-v1")
    p.add_argument("--total-timesteps", type=int, default=8000)
    p.add_argument("--stop-after-s", type=float, default=40.0)
    p.add_argument("--flags", default="--learning-starts 1000 --eval-every 500 --eval-episodes 3 --seed 1",
                   help="the script's other flags, the same in both runs")
    p.add_argument("--out", default="docs/img/resume_curve.png")
    opts = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [sys.executable, os.path.join(ROOT, opts.script), "--env-id", opts.env_id, "--total-timesteps", str(opts.total_timesteps),
               "--no-cuda", "--save-model", *opts.flags.split()]
        runs = {}
        for name in ("unbroken", "stopped"):
            cwd = os.path.join(scratch, name)
            os.makedirs(cwd)
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if name == "stopped":
                time.sleep(opts.stop_after_s)
                proc.send_signal(signal.SIGTERM)
            proc.wait()
            (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
            if name == "stopped":
                stopped_at = max(s for s, _ in evals(run_dir))
                (ckpt,) = [c for c in glob.glob(os.path.join(run_dir, "*.pt")) if not c.endswith(("_best.pt", "_buffer.pt"))]
                subprocess.run(cmd + ["--resume", ckpt], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            runs[name] = evals(run_dir)
        print(f"`python docs/scripts/resume_curve.py --script {opts.script} --env-id {opts.env_id} --total-timesteps "
              f"{opts.total_timesteps} --stop-after-s {opts.stop_after_s:g}` (flags: `{opts.flags}`); the second run was "
              f"stopped by SIGTERM at step {stopped_at} and resumed from its checkpoint.\n")
        print("| step | unbroken | stopped and resumed |\n|---|---|---|")
        resumed = dict(runs["stopped"])
        for step, value in runs["unbroken"]:
            print(f"| {step} | {value:.1f} | {resumed.get(step, float('nan')):.1f}{' (stopped here)' if step == stopped_at else ''} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, style in (("unbroken", "-o"), ("stopped", "--s")):
        steps, values = zip(*runs[name])
        ax.plot(steps, values, style, label="stopped by SIGTERM, resumed" if name == "stopped" else name, ms=4)
    ax.axvline(stopped_at, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_title(f"{opts.script}, {opts.env_id}: resuming from a checkpoint")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    fig.savefig(opts.out, dpi=120)
    print(f"\nsaved {opts.out}")
