"""Updates per second of dqs.py configurations against sac_baseline.py's, measured in one run of this script.

    OMP_NUM_THREADS=1 python docs/scripts/update_ratio.py --repeats 3 \
        --config "network=--acting-score network" --config "critic=" --env-id InvertedPendulum-v4

Each run is a fresh one-thread process in a scratch folder: learning starts at step 1000, then --updates
updates; `update_sps` from its summary.json (env steps per second from the first update to the end of
the loop, evaluation excluded). The scripts run in turn, SAC first in each repeat, so that a slow phase
of the machine falls on all of them; the ratio is each configuration's median over SAC's median.
Common flags (K = 16, N = 20 by default) go with --dqs-flags.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import glob

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def one_run(script, flags, env_id, updates):
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [sys.executable, os.path.join(ROOT, script), "--env-id", env_id, "--learning-starts", "1000", "--total-timesteps",
               str(1000 + updates), "--eval-every", str(10**9), "--eval-episodes", "1", "--no-cuda", *flags]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run(cmd, cwd=scratch, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        (path,) = glob.glob(os.path.join(scratch, "runs", "*", "summary.json"))
        with open(path) as f:
            return json.load(f)["update_sps"]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", required=True, help="name=dqs.py flags (empty: the defaults)")
    p.add_argument("--dqs-flags", default="--num-mc-samples 16 --num-diffusion-steps 20")
    p.add_argument("--env-id", default="InvertedPendulum-v4")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--updates", type=int, default=600, help="DQS updates per run; SAC runs 5x as many")
    args = p.parse_args()
    configs = dict(c.split("=", 1) for c in args.config)
    rates = {"sac": []} | {name: [] for name in configs}
    for _ in range(args.repeats):
        rates["sac"].append(one_run("sac_baseline.py", [], args.env_id, 5 * args.updates))
        for name, flags in configs.items():
            rates[name].append(one_run("dqs.py", args.dqs_flags.split() + flags.split(), args.env_id, args.updates))
        print({k: [round(v, 1) for v in r] for k, r in rates.items()}, flush=True)
    sac = statistics.median(rates["sac"])
    print(f"\n{args.env_id}, one thread, {args.repeats} runs each, dqs.py {args.dqs_flags}\n")
    print("| config | flags | updates/s, median | runs | against SAC |")
    print("|---|---|---|---|---|")
    print(f"| sac_baseline.py | | {sac:.1f} | {', '.join(f'{v:.1f}' for v in rates['sac'])} | 1 |")
    for name, flags in configs.items():
        m = statistics.median(rates[name])
        print(f"| {name} | `{flags}` | {m:.1f} | {', '.join(f'{v:.1f}' for v in rates[name])} | {m / sac:.3f} |")
