"""Learning benchmark: a grid of runs (configs x env ids x seeds), launched here or on Slurm, then
aggregated into a Markdown table, a picture and a JSON per task.

    # SAC against DQS on Hopper, 5 seeds, two runs at a time on this machine
    python benchmark/learning.py --config sac=sac_baseline.py \
        --config "dqs_blend_k64=dqs.py --score-target blend --num-mc-samples 64 --num-diffusion-steps 20" \
        --env-ids Hopper-v4 --seeds 1 2 3 4 5 --total-timesteps 100000 --eval-every 5000 \
        --common-flags="--no-cuda" --jobs 2 --out bench_learning/hopper

    # the same grid as a Slurm job array (one job per run); run it again later to resume preempted runs
    python benchmark/learning.py ...same flags... --launcher slurm --slurm-partition gpu \
        --slurm-time-min 600 --slurm-gpus-per-node 1

    # aggregate any tree of run folders (finished or still running) without launching anything
    python benchmark/learning.py --aggregate-only --runs-root bench_learning/hopper --solve-threshold 3000

Each run is `python {script} {config flags} {common flags} --env-id E --seed S --exp-name {config}
--save-model` in its own folder `{out}/{env_id}/{config}/seed{seed}/` (log: `run.log` there), so
its `runs/{env_id}__{config}__{seed}__{time}/` lands inside. Invoking the same grid again skips the
finished runs, resumes the ones that left a checkpoint and starts the rest. Flags whose value starts
with `--` are written `--common-flags="--no-cuda --learning-starts 1000"` (with the `=`).

The interval is the 95 % percentile bootstrap of the mean over seeds (seeds resampled with
replacement); the interquartile mean (IQM) is that of Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice", per task over seeds.
"""
import concurrent.futures
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import submitit  # noqa: E402
import tyro  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_TAG = "eval/episodic_return"
SUCCESS_TAG = "eval/success_rate"  # logged by the scripts where the env reports success (PointMaze)
BOOTSTRAP_RESAMPLES = 10_000


@dataclass
class Args:
    config: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """a config `NAME=SCRIPT [FLAGS]`, e.g. "sac=sac_baseline.py"; repeat the flag for more configs"""
    env_ids: tuple[str, ...] = ("Pendulum-v1",)
    """the env ids of the grid"""
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    """the seeds of the grid"""
    total_timesteps: int = 100_000
    """env steps of every run (a run is finished when its summary says it reached them)"""
    eval_every: int = 5_000
    """evaluate every this many env steps (the points of the curves)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    common_flags: str = ""
    """more flags for every run, e.g. --common-flags="--no-cuda --learning-starts 1000" """
    out: str = "bench_learning"
    """folder of the runs (`{out}/{env_id}/{config}/seed{seed}/`) and of the tables, pictures and JSON"""
    launcher: Literal["local", "slurm", "submitit-local"] = "local"
    """local: a pool of processes here; slurm: a submitit job array; submitit-local: submitit's local executor (tests)"""
    jobs: int = 1
    """runs at a time (local); the array's parallelism (slurm)"""
    threads_per_run: int = 1
    """OMP_NUM_THREADS and MKL_NUM_THREADS of every run"""
    slurm_partition: str | None = None
    """Slurm partition (cluster default when unset)"""
    slurm_time_min: int = 720
    """Slurm time limit per run in minutes; a run cut off there is resumed by the next invocation"""
    slurm_cpus_per_task: int | None = None
    """Slurm CPUs per run (default: --threads-per-run)"""
    slurm_gpus_per_node: int = 0
    """Slurm GPUs per run"""
    aggregate_only: bool = False
    """launch nothing; aggregate the run folders found under --runs-root"""
    runs_root: str | None = None
    """folder tree to search for run folders (TensorBoard events) when aggregating (default: --out)"""
    solve_threshold: float | None = None
    """if set, also report per config how many seeds reached this eval return, and the median step they first did"""


def fail(message: str):
    """Bad input ends the program with one line naming the problem and a non-zero exit, not a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def safe_name(env_id: str) -> str:
    return env_id.replace("/", "-").replace(":", "-")  # dm_control/cheetah-run-v0, module:id -> one folder, one file name (Windows too)


# ---------------------------------------------------------------------------------------------
# The grid: one Run per (config, env id, seed)
@dataclass
class Run:
    config: str
    env_id: str
    seed: int
    workdir: str
    command: list[str]  # without --resume, which is decided when the run starts
    total_timesteps: int
    threads: int

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "run.log")


def parse_config(text: str) -> tuple[str, str, list[str]]:
    name, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not name or not words:
        fail(f"--config {text!r} is not NAME=SCRIPT [FLAGS]")
    if "__" in name or "/" in name or name.strip() != name:
        fail(f"config name {name!r} may contain neither '__', '/' nor spaces (it names folders)")
    script = next((p for p in (words[0], os.path.join(REPO, words[0])) if os.path.isfile(p)), None)
    if script is None:
        fail(f"config {name!r}: script {words[0]!r} not found (here or in {REPO})")
    return name, os.path.abspath(script), words[1:]


def make_grid(args: Args) -> list[Run]:
    configs = [parse_config(c) for c in args.config]
    names = [c[0] for c in configs]
    if len(set(names)) != len(names):
        fail(f"config names must differ, got {names}")
    if not configs or not args.env_ids or not args.seeds:
        fail(f"empty grid: {len(configs)} configs x {len(args.env_ids)} env ids x {len(args.seeds)} seeds (give --config NAME=SCRIPT)")
    for name in ("total_timesteps", "eval_every", "eval_episodes", "jobs", "threads_per_run"):
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    common = shlex.split(args.common_flags)
    runs = []
    for env_id in args.env_ids:
        for name, script, flags in configs:
            for seed in args.seeds:
                command = [sys.executable, script, *flags, *common, "--env-id", env_id, "--seed", str(seed),
                           "--exp-name", name, "--total-timesteps", str(args.total_timesteps),
                           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
                           "--save-model"]  # always: a preempted run must be resumable
                workdir = os.path.abspath(os.path.join(args.out, safe_name(env_id), name, f"seed{seed}"))
                runs.append(Run(name, env_id, seed, workdir, command, args.total_timesteps, args.threads_per_run))
    return runs


# ---------------------------------------------------------------------------------------------
# How a finished run is recognised, and what a run does when it starts
def read_summary(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # still running (or killed before it could write one)


def is_finished(summary: dict | None, total_timesteps: int | None = None) -> bool:
    """Finished = the script wrote its summary after reaching its step budget, not after an interrupt or a NaN."""
    if summary is None or summary.get("stopped") is not None:
        return False
    total = total_timesteps if total_timesteps is not None else summary["args"]["total_timesteps"]
    return summary["global_step"] == total


def latest_run_dir(workdir: str) -> str | None:
    """The scripts write `runs/{env}__{exp}__{seed}__{unix time}/`; a fresh restart adds a newer one."""
    root = os.path.join(workdir, "runs")
    dirs = [os.path.join(root, d) for d in os.listdir(root)] if os.path.isdir(root) else []
    return max((d for d in dirs if os.path.isdir(d)), key=os.path.getmtime, default=None)


def run_state(run: Run) -> tuple[str, str | None]:
    """('finished', None), ('resume', checkpoint path) or ('fresh', None)."""
    run_dir = latest_run_dir(run.workdir)
    if run_dir is None:
        return "fresh", None
    if is_finished(read_summary(run_dir), run.total_timesteps):
        return "finished", None
    ckpt = os.path.join(run_dir, f"{run.config}.pt")
    return ("resume", ckpt) if os.path.isfile(ckpt) else ("fresh", None)


def launch(run: Run, ignore_usr2: bool = False) -> int:
    """Run one grid point as its own process in its own folder and wait for it; returns its exit code.
    Called in a local worker thread or inside a Slurm job, so a requeued job resumes by itself."""
    os.makedirs(run.workdir, exist_ok=True)
    state, ckpt = run_state(run)
    if state == "finished":
        return 0
    command = run.command + (["--resume", ckpt] if ckpt else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(run.threads), "MKL_NUM_THREADS": str(run.threads)}
    with open(run.log_path, "a") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {state}\n$ {shlex.join(command)}\n")
        log.flush()
        # Under Slurm, submitit's SIGUSR2 before the time limit reaches every process of the job but is meant
        # for submitit (it requeues the job): the script ignores it and saves its checkpoint on the SIGTERM
        # that follows. (preexec_fn is unsafe with threads, so only in a Slurm job's single thread.)
        ignore = (lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN)) if ignore_usr2 else None
        proc = subprocess.run(command, cwd=run.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=ignore)
    return proc.returncode


class SlurmRun(submitit.helpers.Checkpointable):
    """launch() as a submitit job; on timeout or preemption submitit requeues it with the same Run, which resumes."""

    def __call__(self, run: Run) -> int:
        return launch(run, ignore_usr2=True)


# ---------------------------------------------------------------------------------------------
# Launchers: both report each run as it ends, with one progress line
def progress_line(run: Run, what: str) -> str:
    run_dir = latest_run_dir(run.workdir)
    summary = read_summary(run_dir) if run_dir else None
    ret = summary.get("eval_return_mean") if summary else None
    wall = summary.get("wall_time_s") if summary else None
    ret_s = f"eval {ret:.1f}" if ret is not None else "eval -"
    wall_s = f"{wall:.1f} s" if wall is not None else "- s"
    return f"{what:<8} {run.config} {run.env_id} seed {run.seed}: {ret_s}, {wall_s}"


def last_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1] if lines else ""
    except OSError:
        return ""


def run_grid(runs: list[Run], args: Args) -> list[Run]:
    """Launch what is not finished; returns the runs that failed."""
    todo = []
    for run in runs:
        state, _ = run_state(run)
        if state == "finished":
            print(progress_line(run, "skipped"), flush=True)
        else:
            todo.append(run)
    print(f"{len(runs) - len(todo)} of {len(runs)} runs already finished, launching {len(todo)} ({args.launcher})", flush=True)
    failed = []

    def report(run: Run, code: int | None, detail: str = ""):
        if code == 0:
            print(progress_line(run, "launched"), flush=True)
        else:
            failed.append(run)
            print(f"{progress_line(run, 'FAILED')} (exit {code}) {detail or last_line(run.log_path)}", flush=True)

    if not todo:
        return failed
    if args.launcher == "local":
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(launch, run): run for run in todo}
            for future in concurrent.futures.as_completed(futures):
                report(futures[future], future.result())
        return failed

    if args.launcher == "slurm" and shutil.which("sbatch") is None:
        fail("--launcher slurm needs Slurm's sbatch on this machine")
    executor = submitit.AutoExecutor(folder=os.path.join(args.out, "submitit"),
                                     cluster="slurm" if args.launcher == "slurm" else "local")
    executor.update_parameters(name="dqs-learning", timeout_min=args.slurm_time_min,
                               cpus_per_task=args.slurm_cpus_per_task or args.threads_per_run,
                               gpus_per_node=args.slurm_gpus_per_node, slurm_array_parallelism=args.jobs,
                               **({"slurm_partition": args.slurm_partition} if args.slurm_partition else {}))
    with executor.batch():  # one job array, one job per run
        jobs = [executor.submit(SlurmRun(), run) for run in todo]
    print(f"submitted {len(jobs)} jobs: {jobs[0].job_id.split('_')[0]} (logs in {os.path.join(args.out, 'submitit')})", flush=True)
    by_id = {job.job_id: run for job, run in zip(jobs, todo)}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=1 if args.launcher == "submitit-local" else 30):
        try:
            report(by_id[job.job_id], job.result())
        except Exception as e:  # the job itself failed (node failure, out of memory, ...), not the script
            report(by_id[job.job_id], None, f"{type(e).__name__}; see {job.paths.stderr}")
    return failed


# ---------------------------------------------------------------------------------------------
# Aggregation: any tree of run folders, found by their TensorBoard events
def find_runs(root: str) -> list[dict]:
    runs = {}
    for dirpath, _, files in os.walk(root):
        if not any(f.startswith("events.out.tfevents") for f in files):
            continue
        summary = read_summary(dirpath)
        if summary is not None:
            env_id, exp_name, seed = summary["env_id"], summary["args"]["exp_name"], int(summary["seed"])
        else:  # still running: the folder name is {env_id}__{exp_name}__{seed}__{unix time}
            parts = os.path.basename(dirpath).split("__")
            if len(parts) < 4 or not parts[-2].lstrip("-").isdigit():
                print(f"note: cannot tell the run of {dirpath} (no summary.json, unknown folder name); left out")
                continue
            env_id, exp_name, seed = parts[0], "__".join(parts[1:-2]), int(parts[-2])
        acc = EventAccumulator(dirpath, size_guidance={"scalars": 0}).Reload()
        points = acc.Scalars(EVAL_TAG) if EVAL_TAG in acc.Tags()["scalars"] else []
        steps = np.array([p.step for p in points], dtype=np.int64)
        values = np.array([p.value for p in points], dtype=np.float64)
        success = acc.Scalars(SUCCESS_TAG) if SUCCESS_TAG in acc.Tags()["scalars"] else []
        finished = is_finished(summary)
        updates = None
        if summary is not None:
            # the scripts update once per step from the step their buffer holds max(learning_starts, batch_size)
            # transitions on; an upper bound for a resumed run, which refills its buffer before updating again
            first = max(summary["args"].get("learning_starts", 0), summary["args"].get("batch_size", 0))
            updates = summary.get("num_updates", max(0, summary["global_step"] - first + 1))
        run = {"dir": dirpath, "env_id": env_id, "exp_name": exp_name, "seed": seed, "finished": finished,
               "global_step": summary["global_step"] if summary else int(steps.max(initial=0)),
               "num_updates": updates, "updates_estimated": summary is not None and "num_updates" not in summary,
               "wall_time_s": summary.get("wall_time_s") if summary else None,
               "stopped": summary.get("stopped") if summary else "running (no summary.json yet)",
               "steps": steps.tolist(), "values": values.tolist(),
               "success_steps": [p.step for p in success], "success_values": [p.value for p in success]}
        key = (env_id, exp_name, seed)
        if key in runs:  # e.g. a run restarted from scratch next to its dead first attempt: keep the newer
            older, newer = sorted([runs[key], run], key=lambda r: os.path.getmtime(r["dir"]))
            print(f"note: two folders for {key}; using {newer['dir']}, not {older['dir']}")
            run = newer
        runs[key] = run
    return sorted(runs.values(), key=lambda r: (r["env_id"], r["exp_name"], r["seed"]))


def bootstrap_ci(x, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds: resample the seeds with replacement,
    take the mean of each resample, and the (1 -+ confidence) / 2 quantiles of those means."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")  # one seed says nothing about the spread
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def iqm(x) -> float:
    """Interquartile mean: the mean of the middle half of the sorted values (a quarter cut from each end)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    cut = len(x) // 4
    return float(x[cut:len(x) - cut].mean()) if len(x) >= 5 else float("nan")


def curve_over_seeds(runs: list[dict], steps_key: str = "steps", values_key: str = "values") -> list[dict]:
    """The mean over seeds at every eval step, with its bootstrap interval and IQM."""
    curve = []
    for step in sorted({s for r in runs for s in r[steps_key]}):
        vals = [v for r in runs for s, v in zip(r[steps_key], r[values_key]) if s == step]
        lo, hi = bootstrap_ci(vals)
        curve.append({"step": step, "n": len(vals), "mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi, "iqm": iqm(vals)})
    return curve


def aggregate_config(runs: list[dict], threshold: float | None) -> dict:
    """One config on one task: the curve over seeds at every eval step, and the final numbers (and the same for the
    success rate where the env reports one)."""
    curve = curve_over_seeds(runs)
    done = [r for r in runs if r["finished"]]
    # final = each finished run's last eval point (at its last step), as TensorBoard logged it
    final = [r["values"][-1] for r in done if r["steps"] and r["steps"][-1] == r["global_step"]]
    lo, hi = bootstrap_ci(final)
    out = {"seeds_run": len(runs), "seeds_finished": len(done), "seeds": [r["seed"] for r in runs],
           "final_mean": float(np.mean(final)) if final else float("nan"), "final_ci_low": lo, "final_ci_high": hi,
           "final_iqm": iqm(final), "final_n": len(final),
           "env_steps": sorted({r["global_step"] for r in done}),
           "num_updates": sorted({r["num_updates"] for r in done if r["num_updates"] is not None}),
           "updates_estimated": any(r["updates_estimated"] for r in done),
           "median_wall_time_s": float(np.median([r["wall_time_s"] for r in done if r["wall_time_s"] is not None]))
           if any(r["wall_time_s"] is not None for r in done) else float("nan"),
           "unfinished": [{"seed": r["seed"], "step": r["global_step"], "stopped": r["stopped"], "dir": r["dir"]}
                          for r in runs if not r["finished"]],
           "curve": curve}
    if any(r["success_values"] for r in runs):
        final_success = [r["success_values"][-1] for r in done if r["success_steps"] and r["success_steps"][-1] == r["global_step"]]
        out["success_curve"] = curve_over_seeds(runs, "success_steps", "success_values")
        out["final_success_mean"] = float(np.mean(final_success)) if final_success else float("nan")
    if threshold is not None:
        first = [next(s for s, v in zip(r["steps"], r["values"]) if v >= threshold)
                 for r in runs if any(v >= threshold for v in r["values"])]
        out["solved"] = len(first)
        out["median_steps_to_solve"] = float(np.median(first)) if first else float("nan")
    return out


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or np.isnan(x) else f"{x:.{digits}f}"


def fmt_span(values: list) -> str:
    return "-" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def write_task(env_id: str, configs: dict, args: Args, commands: dict) -> str:
    name = os.path.join(args.out, safe_name(env_id))
    header = "| config | seeds finished/run | final eval mean [95 % CI] | IQM | env steps | gradient updates | median wall time (s) |"
    rule = "|---|---|---|---|---|---|---|"
    if args.solve_threshold is not None:
        header += f" solved (>= {args.solve_threshold:g})/run | median steps to solve |"
        rule += "---|---|"
    with_success = any("success_curve" in a for a in configs.values())
    if with_success:
        header += " final success rate |"
        rule += "---|"
    lines = [f"# Learning: {env_id}", "", header, rule]
    for config, a in configs.items():
        updates = fmt_span(a["num_updates"]) + (" (est.)" if a["updates_estimated"] else "")
        row = (f"| {config} | {a['seeds_finished']}/{a['seeds_run']} | {fmt(a['final_mean'])} "
               f"[{fmt(a['final_ci_low'])}, {fmt(a['final_ci_high'])}] | {fmt(a['final_iqm'])} | {fmt_span(a['env_steps'])} "
               f"| {updates} | {fmt(a['median_wall_time_s'])} |")
        if args.solve_threshold is not None:
            row += f" {a['solved']}/{a['seeds_run']} | {fmt(a['median_steps_to_solve'], 0)} |"
        if with_success:
            row += f" {fmt(a.get('final_success_mean', float('nan')), 2)} |"
        lines.append(row)
    lines += ["", "Final eval return: the last evaluation of each finished seed; 95 % percentile bootstrap over seeds "
              f"({BOOTSTRAP_RESAMPLES} resamples); IQM only with >= 5 seeds. Gradient updates marked est. are "
              "env steps minus max(learning_starts, batch_size) (an upper bound for resumed runs); wall time is the last segment of a resumed run."]
    for config, a in configs.items():
        for u in a["unfinished"]:
            lines.append(f"- unfinished: {config} seed {u['seed']} at step {u['step']} ({u['stopped']}): `{u['dir']}`")
    lines += ["", f"![eval return against env steps]({safe_name(env_id)}.png)", ""]
    lines += [f"Grid: `{commands['grid']}`", ""] if commands.get("grid") else []
    lines += [f"Aggregated by: `{commands['aggregate']}`", ""] if commands["aggregate"] != commands.get("grid") else []
    with open(name + ".md", "w") as f:
        f.write("\n".join(lines))

    panels = [("curve", "eval episodic return")] + ([("success_curve", "eval success rate")] if with_success else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels):
        for config, a in configs.items():
            points = a.get(key, [])
            steps = np.array([p["step"] for p in points])
            mean = np.array([p["mean"] for p in points])
            lo, hi = np.array([p["ci_low"] for p in points]), np.array([p["ci_high"] for p in points])
            (line,) = ax.plot(steps, mean, label=f"{config} ({a['seeds_finished']}/{a['seeds_run']} seeds)")
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{env_id}: mean over seeds, 95 % bootstrap band")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(name + ".png", dpi=120)
    plt.close(fig)
    return name + ".md"


def aggregate(args: Args, root: str, runs: list[dict]) -> dict:
    os.makedirs(args.out, exist_ok=True)
    grid_command_path = os.path.join(root, "grid_command.txt")
    commands = {"aggregate": shlex.join(["python", *sys.argv])}
    if os.path.isfile(grid_command_path):
        with open(grid_command_path) as f:
            commands["grid"] = f.read().strip()
    tasks = {}
    for env_id in sorted({r["env_id"] for r in runs}):
        names = sorted({r["exp_name"] for r in runs if r["env_id"] == env_id})
        configs = {n: aggregate_config([r for r in runs if (r["env_id"], r["exp_name"]) == (env_id, n)], args.solve_threshold)
                   for n in names}
        tasks[env_id] = configs
        print(f"wrote {write_task(env_id, configs, args, commands)} and .png")
        for n, a in configs.items():
            print(f"  {n}: final eval {fmt(a['final_mean'])} [{fmt(a['final_ci_low'])}, {fmt(a['final_ci_high'])}] "
                  f"over {a['final_n']} seeds ({a['seeds_finished']}/{a['seeds_run']} finished)")
    result = {"commands": commands, "runs_root": root, "solve_threshold": args.solve_threshold,
              "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "tasks": tasks, "runs": runs}
    with open(os.path.join(args.out, "aggregate.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    args = tyro.cli(Args)
    failed = []
    if not args.aggregate_only:
        runs = make_grid(args)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "grid_command.txt"), "w") as f:
            f.write(shlex.join(["python", *sys.argv]) + "\n")
        failed = run_grid(runs, args)
    root = args.runs_root or args.out
    found = find_runs(root)
    if found:
        aggregate(args, root, found)
    elif args.aggregate_only or not failed:
        fail(f"no run folders (TensorBoard events) under {root!r}")
    if failed:
        for run in failed:
            print(f"failed: {run.config} {run.env_id} seed {run.seed}, log {run.log_path}", file=sys.stderr)
        print(f"error: {len(failed)} of {len(runs)} runs failed (logs above); the others are aggregated", file=sys.stderr)
        sys.exit(1)
