"""Steps per second of sac_baseline.py and dqs.py on Humanoid-v4, with their defaults against with some flags.

    python docs/scripts/sps_scripts.py --flags=--compile                          # both scripts, 3 runs each way
    python docs/scripts/sps_scripts.py --flags="--matmul-precision medium"
    python docs/scripts/sps_scripts.py --flags=--compile --repeats 1 --device cuda --dqs-k 1000   # the paper's K, on a GPU

Each run is a fresh process in a scratch folder. Two numbers per run: `update_sps`, the env steps per
second from the first update to the end (what summary.json reports; under --compile it includes the
compiling), and the steady rate over the second half of the updates, read from the wall times of
charts/SPS in the run's TensorBoard file (compiling is over by then). Medians over the repeats;
"speed-up" is with the flags over without, from runs made alternately on the same machine.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))  # the repo root
RUNS = {  # script, total steps (learning starts at 1000): 5000 SAC updates, 600 DQS updates
    "sac_baseline.py": 6000,
    "dqs.py": 1600,
}


def one_run(script, flags, total, extra, device):
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [sys.executable, os.path.join(ROOT, script), "--env-id", "Humanoid-v4", "--learning-starts", "1000",
               "--total-timesteps", str(total), "--eval-episodes", "1", *flags]
        cmd += extra
        cmd += ["--no-cuda"] if device == "cpu" else []
        subprocess.run(cmd, cwd=scratch, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (run_dir,) = glob.glob(os.path.join(scratch, "runs", "*"))
        with open(os.path.join(run_dir, "summary.json")) as f:
            update_sps = json.load(f)["update_sps"]
        events = EventAccumulator(run_dir)
        events.Reload()
        wall = {e.step: e.wall_time for e in events.Scalars("charts/SPS")}
        lo = min(s for s in wall if s >= (1000 + total) // 2)
        hi = max(wall)
        return update_sps, (hi - lo) / (wall[hi] - wall[lo]), " ".join(["python", script] + cmd[2:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--scripts", default="sac_baseline.py,dqs.py")
    parser.add_argument("--flags", required=True, help="the flags to compare against the defaults, one string")
    parser.add_argument("--dqs-k", type=int, default=64, help="dqs.py's --num-mc-samples (64: a CPU's size)")
    args = parser.parse_args()
    print("| script | flags | update_sps, median | steady SPS, second half, median | runs (update_sps/steady) | command |")
    print("|---|---|---|---|---|---|")
    for script in args.scripts.split(","):
        total = RUNS[script]
        flags = ["--num-mc-samples", str(args.dqs_k)] if script == "dqs.py" else []
        results = {False: [], True: []}
        for _ in range(args.repeats):
            for with_flags in (False, True):
                results[with_flags].append(one_run(script, flags, total, args.flags.split() if with_flags else [], args.device))
        medians = {}
        for with_flags, rows in results.items():
            medians[with_flags] = [statistics.median(r[i] for r in rows) for i in (0, 1)]
            runs = ", ".join(f"{r[0]:.1f}/{r[1]:.1f}" for r in rows)
            print(f"| {script} | {args.flags if with_flags else 'defaults'} | {medians[with_flags][0]:.1f} | "
                  f"{medians[with_flags][1]:.1f} | {runs} | `{rows[0][2]}` |", flush=True)
        print(f"| {script} | speed-up | {medians[True][0] / medians[False][0]:.2f} | "
              f"{medians[True][1] / medians[False][1]:.2f} | | |", flush=True)
