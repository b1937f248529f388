"""The table that chooses K: the error of DQS's Monte-Carlo score targets per K, per quarter of t, on frozen critics.

    OMP_NUM_THREADS=1 python sac_baseline.py --env-id InvertedPendulum-v4 --total-timesteps 10000 --learning-starts 2000 \
        --eval-every 10000 --eval-episodes 2 --no-cuda --save-model --exp-name ktable
    (likewise HalfCheetah-v4 and Humanoid-v4)
    OMP_NUM_THREADS=1 python docs/scripts/k_table.py runs/InvertedPendulum-v4__ktable__1__*/ktable.pt \
        runs/HalfCheetah-v4__ktable__1__*/ktable.pt runs/Humanoid-v4__ktable__1__*/ktable.pt --states 64

Each checkpoint is a sac_baseline.py or dqs.py --save-model file: its online critics qf1 and qf2 are frozen and its
replay buffer (the `_buffer.pt` beside it) gives the states and actions. Per checkpoint:

- T by the repo's rule, dqs.temperature_from_critic(grads, --temperature-scale), grads the action-gradients of
  min(Q1, Q2) at the buffer's actions (of up to --temperature-rows rows).
- The target that dqs.py's score network trains on by default: the exact-bounds log target (dqs.twin_log_target with
  exact_bounds=True), x_0 = atanh(buffer action), x_t = x_0 + sqrt(h(t)) eps, one t per state drawn uniformly in each
  quarter of [0, 1].
- The reference score at those (x_t, t): with a 1-D action the exact noised score, by quadrature on a grid around x_t
  in float64 (the gradient form E[p grad log p] / E[p] under the kernel N(x_t, h), checked against the posterior-mean
  form and against the blend at K = --ref-k); otherwise the blend at K = --ref-k, whose own noise is estimated from
  its two independent halves as RMS(half1 - half2) / 2 (the floor printed beside the table).
- Rows: dqs.mc_score_target at form "grad" (the paper's S_K) with K = --sk-k, and "blend" and "cv" at each of --ks;
  cell = RMS over states, action dimensions and --repeats independent draws of (estimate - reference), also divided
  by the reference's RMS; +- is the standard error over the repeats.
- The acting estimator: dqs.refit_score ("refit") and the blend at each of --acting-ks, as the error against the
  reference at the points with t >= --clean-score-until (where the critic-driven sampler uses the estimate); with a
  1-D action also the ratio of the std of tanh(x) from dqs.sample_actions driven by dqs.critic_score (N =
  --num-diffusion-steps) to the exact Boltzmann policy's std on a grid of the box, at --policy-states states.
- The picks: the smallest K at which the blend (and the cv) is at least as accurate as S_K at K = --sk-k in every
  quarter; the smallest acting K whose result matches --acting-base's within twice their combined standard error.

Writes --out.md (the command as an HTML comment at the top) and --out.json.
"""
import argparse
import json
import math
import os
import shlex
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # the repo root, for dqs.py
import dqs  # noqa: E402

QUARTERS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
SCHEDULE = dqs.Schedule()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="*", help="--save-model checkpoints (runs/<run>/<exp>.pt, its _buffer.pt beside it)")
    p.add_argument("--states", type=int, default=64, help="buffer rows (state, action) per checkpoint; one point per quarter each")
    p.add_argument("--ks", default="16,32,64,128,256", help="K values of the blend and cv rows")
    p.add_argument("--sk-k", type=int, default=1000, help="K of the paper's S_K row")
    p.add_argument("--ref-k", type=int, default=100_000, help="K of the blend reference (multi-D) and of the quadrature's check (1-D)")
    p.add_argument("--repeats", type=int, default=3, help="independent draws of each row's estimates at the same points")
    p.add_argument("--acting-ks", default="16,32,64", help="K values of the acting estimator's rows")
    p.add_argument("--acting-forms", default="refit,blend", help="critic_score forms of the acting rows")
    p.add_argument("--acting-base", type=int, default=64, help="the acting K that the acting pick is compared with")
    p.add_argument("--clean-score-until", type=float, default=dqs.Args.clean_score_until)
    p.add_argument("--num-diffusion-steps", type=int, default=dqs.Args.num_diffusion_steps, help="N of the 1-D sampler rows")
    p.add_argument("--policy-states", type=int, default=8, help="1-D: states of the sampled-std rows")
    p.add_argument("--policy-samples", type=int, default=256, help="1-D: sampled actions per state and row")
    p.add_argument("--check-states", type=int, default=16, help="1-D: states at which the quadrature is checked against the blend at --ref-k")
    p.add_argument("--temperature-scale", type=float, default=0.09)
    p.add_argument("--temperature-rows", type=int, default=4096)
    p.add_argument("--grid-points", type=int, default=4001, help="1-D quadrature nodes over x_t +- --grid-half-width sqrt(h)")
    p.add_argument("--grid-half-width", type=float, default=10.0)
    p.add_argument("--ref-group", type=int, default=8, help="points per batch of the K = --ref-k reference")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=os.path.join("docs", "data", "k_table"), help="output path without extension")
    p.add_argument("--render", action="store_true", help="only rewrite --out.md from --out.json (its command and numbers)")
    return p.parse_args(argv)


def load(path):
    """The frozen online critics and the replay buffer of a --save-model checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    buffer = torch.load(path.removesuffix(".pt") + "_buffer.pt", map_location="cpu", weights_only=True)["buffer"]
    obs_dim, act_dim = buffer["obs"].shape[1], buffer["actions"].shape[1]
    critics = []
    for name in ("qf1", "qf2"):
        q = dqs.SoftQNetwork(obs_dim, act_dim)
        q.load_state_dict(state[name])  # strict: the checkpoint's critic has dqs.SoftQNetwork's layout
        q.requires_grad_(False)
        critics.append(q)
    env_id = state.get("env_id") or os.path.basename(os.path.dirname(path))
    return env_id, state.get("step"), critics, buffer


def log_target(critics, obs, temperature):
    """T log p(x) + const at states obs (B, obs_dim), exact bounds: what dqs.py's score network trains on by default."""
    return dqs.twin_log_target(*critics, obs.unsqueeze(1), temperature, exact_bounds=True)


def rule_temperature(critics, obs, actions, scale):
    """dqs.py's T without --temperature: scale x the RMS action-gradient of min(Q1, Q2) at these actions."""
    target = dqs.twin_log_target(*critics, obs.unsqueeze(1), 1.0, exact_bounds=False)
    _, grads = dqs.values_and_action_grads(target, actions.unsqueeze(1), 1)
    return float(dqs.temperature_from_critic(grads, scale))


@torch.no_grad()
def quadrature_score(critics, obs, x_t, t, temperature, points, half_width):
    """The exact noised score of p(x) ∝ exp(log_target(x) / T) at x_t (P, 1), by quadrature in float64 on the grid
    x = x_t + sqrt(h) u, u in [-half_width, half_width], w_j ∝ p(x_j) exp(-u_j^2 / 2): the posterior-mean (Tweedie) form
    sum_j w_j (x_j - x_t) / h, the derivative of log p_t(x_t) itself, whose integrand is continuous for a ReLU critic
    (error O(du^2)), and as its check the gradient form sum_j w_j grad log p(x_j), whose integrand jumps at the
    critic's kinks (error O(du)). Float64 keeps the posterior-mean form exact down to the smallest h. Returns both (P, 1)."""
    critics64 = [dqs.SoftQNetwork(c.obs_dim, 1).double() for c in critics]
    for c64, c in zip(critics64, critics):
        c64.load_state_dict(c.state_dict())
    u = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    mean_form, grad_form = torch.empty_like(x_t, dtype=torch.float64), torch.empty_like(x_t, dtype=torch.float64)
    for i in range(x_t.shape[0]):
        sqrt_h = SCHEDULE.h(t[i : i + 1].double()).sqrt()
        x = (x_t[i].double() + sqrt_h * u).reshape(1, -1, 1)
        value, grad = log_target(critics64, obs[i : i + 1].double(), temperature).value_and_grad(x)
        w = torch.softmax(value[0] / temperature - u.pow(2) / 2, 0)
        grad_form[i] = (w * grad[0, :, 0]).sum() / temperature
        mean_form[i] = (w * u).sum() / sqrt_h
    return mean_form.float(), grad_form.float()


@torch.no_grad()
def blend_reference(critics, obs, x_t, t, temperature, k, group):
    """The blend (dqs.blend_with_noise_form of S_K) at K = k and the same from each half of its samples, then S_K of the
    same samples and of each half: (P, d) x 6."""
    outs = [torch.empty_like(x_t) for _ in range(6)]
    chunk = max(1, dqs.CPU_CHUNK_ROWS // group)
    for start in range(0, x_t.shape[0], group):
        rows = slice(start, start + group)
        b, d = x_t[rows].shape
        sqrt_h = SCHEDULE.h(t[rows]).sqrt().reshape(b, 1, 1)
        z = torch.randn(b, k, d)
        q, grad = dqs.values_and_action_grads(log_target(critics, obs[rows], temperature), x_t[rows].unsqueeze(1) + sqrt_h * z, chunk)
        for i, part in enumerate((slice(None), slice(0, k // 2), slice(k // 2, None))):
            w = torch.softmax(q[:, part] / temperature, 1)
            s_k = (w.unsqueeze(-1) * grad[:, part]).sum(1) / temperature
            outs[i][rows] = dqs.blend_with_noise_form(s_k, w, z[:, part], sqrt_h.reshape(b, 1))
            outs[3 + i][rows] = s_k
    return outs


def rms(v):
    return float(v.pow(2).mean().sqrt())


def cell(estimates, reference, mask):
    """RMS of (estimate - reference) over the masked points, their dimensions and the repeats; the standard error
    over the repeats; the same relative to the reference's RMS there."""
    per_repeat = [rms(e[mask] - reference[mask]) for e in estimates]
    value = math.sqrt(sum(r * r for r in per_repeat) / len(per_repeat))
    se = float(np.std(per_repeat, ddof=1) / math.sqrt(len(per_repeat))) if len(per_repeat) > 1 else float("nan")
    scale = rms(reference[mask])
    return {"rms": value, "se": se, "rel": value / scale, "n": int(mask.sum())}


@torch.no_grad()
def sampled_std_ratio(critics, obs, temperature, k, form, args):
    """1-D: std of tanh(x) from the critic-driven sampler over the exact policy's std on the box, per state; mean and
    standard error (delta method, from the samples' fourth moment)."""
    m = args.policy_samples
    obs_m = obs.repeat_interleave(m, 0)
    score = dqs.critic_score(log_target(critics, obs_m, temperature), temperature, k, args.clean_score_until, SCHEDULE, form=form)
    a = torch.tanh(dqs.sample_actions(score, (obs_m.shape[0], 1), args.num_diffusion_steps, SCHEDULE)).reshape(-1, m).double()
    grid = torch.linspace(-1, 1, 4001, dtype=torch.float64).reshape(1, -1, 1)
    critics64 = [dqs.SoftQNetwork(c.obs_dim, 1).double() for c in critics]
    for c64, c in zip(critics64, critics):
        c64.load_state_dict(c.state_dict())
    q = torch.min(*[c.condition(obs.double().unsqueeze(1))(grid) for c in critics64])
    p = torch.softmax(q / temperature, 1)
    mean = (p * grid[..., 0]).sum(1)
    std_exact = (p * (grid[..., 0] - mean[:, None]).pow(2)).sum(1).sqrt()
    std = a.std(1)
    kurt = ((a - a.mean(1, keepdim=True)).pow(4).mean(1) / a.var(1, unbiased=False).pow(2))
    se = std * ((kurt - 1).clamp_min(0) / (4 * m)).sqrt() / std_exact
    ratio = std / std_exact
    return {"ratio": float(ratio.mean()), "se": float(se.pow(2).sum().sqrt() / len(ratio)), "std_exact": float(std_exact.mean())}


def smallest_k(ks, ok):
    good = [k for k in ks if ok(k)]
    return min(good) if good else None


def run_checkpoint(path, args):
    start = time.time()
    torch.manual_seed(args.seed)
    env_id, step, critics, buffer = load(path)
    size, act_dim = buffer["actions"].shape
    rows_t = torch.randperm(size)[: args.temperature_rows]
    temperature = rule_temperature(critics, buffer["obs"][rows_t], buffer["actions"][rows_t], args.temperature_scale)
    rows = torch.randperm(size)[: args.states]
    s = len(rows)
    obs = buffer["obs"][rows].repeat(len(QUARTERS), 1)
    x_0 = torch.atanh(buffer["actions"][rows].clamp(-1 + 1e-6, 1 - 1e-6)).repeat(len(QUARTERS), 1)
    t = torch.cat([lo + (hi - lo) * torch.rand(s) for lo, hi in QUARTERS])
    x_t = x_0 + SCHEDULE.h(t).sqrt().unsqueeze(-1) * torch.randn_like(x_0)
    quarter_masks = [(t >= lo) & (t < hi) for lo, hi in QUARTERS]
    acting_bins = [(args.clean_score_until, 0.75), (0.75, 1.0)]
    acting_masks = [(t >= lo) & (t < hi) for lo, hi in acting_bins]
    info = {"checkpoint": os.path.relpath(path), "env_id": env_id, "step": step, "act_dim": act_dim, "buffer_rows": size,
            "states": s, "temperature": temperature, "repeats": args.repeats}
    print(f"{env_id} (step {step}, {act_dim}-D action): T = {temperature:.4g} from {len(rows_t)} buffer rows; {s} states", flush=True)

    if act_dim == 1:
        reference, grad_form = quadrature_score(critics, obs, x_t, t, temperature, args.grid_points, args.grid_half_width)
        info["reference"] = f"exact, by quadrature ({args.grid_points} nodes over x_t +- {args.grid_half_width:g} sqrt(h), float64)"
        info["quadrature_forms_rel_diff"] = [rms(reference[m] - grad_form[m]) / rms(reference[m]) for m in quarter_masks]
        n_check = min(args.check_states, s) * len(QUARTERS)
        check_idx = torch.cat([torch.arange(q * s, q * s + min(args.check_states, s)) for q in range(len(QUARTERS))])
        full, half1, half2, *_ = blend_reference(critics, obs[check_idx], x_t[check_idx], t[check_idx], temperature, args.ref_k,
                                                 args.ref_group)
        info["check"] = {"k": args.ref_k, "points": n_check, "quarters": [
            {"quad_vs_blend_rms": rms(full[m] - reference[check_idx][m]), "blend_floor_rms": rms(half1[m] - half2[m]) / 2,
             "ref_rms": rms(reference[check_idx][m])} for m in [mask[check_idx] for mask in quarter_masks]]}
    else:
        reference, half1, half2, s_k, s_k1, s_k2 = blend_reference(critics, obs, x_t, t, temperature, args.ref_k, args.ref_group)
        info["reference"] = f"blend at K = {args.ref_k}"
        info["s_k_at_ref_k"] = [{"vs_blend_rms": rms(s_k[m] - reference[m]), "floor_rms": rms(s_k1[m] - s_k2[m]) / 2}
                                for m in quarter_masks]
    info["floor"] = [{"rms": rms(half1[m] - half2[m]) / 2 if act_dim > 1 else 0.0, "ref_rms": rms(reference[m])}
                     for m in quarter_masks]
    info["acting_floor"] = [{"rms": rms(half1[m] - half2[m]) / 2 if act_dim > 1 else 0.0, "ref_rms": rms(reference[m])}
                            for m in acting_masks]
    print(f"  reference: {info['reference']} ({time.time() - start:.0f} s)", flush=True)

    ks = [int(k) for k in args.ks.split(",")]
    specs = [("grad", args.sk_k)] + [(form, k) for form in ("blend", "cv") for k in ks]
    table = []
    for form, k in specs:
        estimates = [dqs.mc_score_target(log_target(critics, obs, temperature), x_t, t, temperature, k, SCHEDULE, form=form)
                     for _ in range(args.repeats)]
        table.append({"form": form, "k": k, "quarters": [cell(estimates, reference, m) for m in quarter_masks]})
    print(f"  target rows ({time.time() - start:.0f} s)", flush=True)

    acting_ks = [int(k) for k in args.acting_ks.split(",")]
    late = t >= args.clean_score_until
    step_noise = (SCHEDULE.g2(t) / args.num_diffusion_steps).sqrt().unsqueeze(-1)  # the sampler step's noise std g sqrt(dt)
    acting = []
    for form in args.acting_forms.split(","):
        for k in acting_ks:
            estimates = []
            for _ in range(args.repeats):
                e = torch.zeros_like(x_t)
                if form == "refit":
                    e[late] = dqs.refit_score(log_target(critics, obs[late], temperature), x_t[late], t[late], temperature, k, SCHEDULE)
                else:
                    e[late] = dqs.mc_score_target(log_target(critics, obs[late], temperature), x_t[late], t[late], temperature, k,
                                                  SCHEDULE, form=form)
                estimates.append(e)
            drift = [e * step_noise for e in estimates]  # g^2 dt (estimate) / (g sqrt(dt)): the drift per noise std
            row = {"form": form, "k": k, "bins": [cell(estimates, reference, m) for m in acting_masks],
                   "drift_bins": [cell(drift, reference * step_noise, m) for m in acting_masks]}
            if act_dim == 1:
                row["std_ratio"] = sampled_std_ratio(critics, buffer["obs"][rows[: args.policy_states]], temperature, k, form, args)
            acting.append(row)
    print(f"  acting rows ({time.time() - start:.0f} s)", flush=True)

    sk = table[0]["quarters"]
    picks = {}
    for form in ("blend", "cv"):
        by_k = {r["k"]: r["quarters"] for r in table if r["form"] == form}
        picks[form] = smallest_k(ks, lambda k: all(c["rms"] <= b["rms"] for c, b in zip(by_k[k], sk)))
    for form in args.acting_forms.split(","):
        by_k = {r["k"]: r for r in acting if r["form"] == form}
        base = by_k.get(args.acting_base)
        if base is None:
            continue
        matches_error = lambda k: all(abs(c["rms"] - b["rms"]) <= 2 * math.hypot(c["se"], b["se"])
                                      for c, b in zip(by_k[k]["bins"], base["bins"]))
        picks[f"acting_{form}_error"] = smallest_k(acting_ks, matches_error)
        if act_dim == 1:
            matches_std = lambda k: abs(by_k[k]["std_ratio"]["ratio"] - base["std_ratio"]["ratio"]) <= 2 * math.hypot(
                by_k[k]["std_ratio"]["se"], base["std_ratio"]["se"])
            picks[f"acting_{form}_std"] = smallest_k(acting_ks, matches_std)
    info.update(table=table, acting=acting, acting_bins=acting_bins, picks=picks, wall_s=time.time() - start)
    print(f"  picks {picks} ({info['wall_s']:.0f} s)", flush=True)
    return info


def per_quarter_picks(table):
    """Per form, the smallest K whose RMS is at most S_K's in each quarter on its own (None: no K of the rows)."""
    sk = table[0]["quarters"]
    out = {}
    for form in ("blend", "cv"):
        by_k = {r["k"]: r["quarters"] for r in table if r["form"] == form}
        out[form] = [smallest_k(sorted(by_k), lambda k: by_k[k][q]["rms"] <= sk[q]["rms"]) for q in range(len(QUARTERS))]
    return out


def fmt(c):
    return f"{c['rms']:.3g} ({c['rel']:.2g})"


def markdown(results, command, args):
    lines = [f"<!-- {command} -->", "",
             f"# The score target's error per K (docs/scripts/k_table.py)", "",
             "Cells: RMS over states, action dimensions and repeats of (estimate - reference), and in brackets relative to "
             "the reference's RMS there. Exact-bounds target, T by the repo's rule, t uniform in each quarter, x_t noised "
             "from the buffer's actions.", ""]
    for r in results:
        q_head = " | ".join(f"t in [{lo:g}, {hi:g})" for lo, hi in QUARTERS)
        lines += [f"## {r['env_id']} ({r['act_dim']}-D action, checkpoint step {r['step']})", "",
                  f"`{r['checkpoint']}`; {r['states']} states, one point per quarter each, {r['repeats']} repeats; "
                  f"T = {r['temperature']:.4g}; reference: {r['reference']}; {r['wall_s']:.0f} s.", "",
                  f"| estimator | {q_head} |", "|---|" + "---|" * len(QUARTERS)]
        lines.append("| reference RMS | " + " | ".join(f"{f['ref_rms']:.3g}" for f in r["floor"]) + " |")
        if r["act_dim"] > 1:
            lines.append("| reference noise, RMS(half1 - half2) / 2 | " + " | ".join(
                f"{f['rms']:.3g} ({f['rms'] / f['ref_rms']:.2g})" for f in r["floor"]) + " |")
            lines.append(f"| check: RMS(S_K - blend), same K = {args.ref_k} samples [S_K's own noise] | " + " | ".join(
                f"{q['vs_blend_rms']:.3g} [{q['floor_rms']:.3g}]" for q in r["s_k_at_ref_k"]) + " |")
        else:
            lines.append("| check: RMS(gradient form - posterior-mean form of the quadrature) / reference RMS | " + " | ".join(
                f"{v:.2g}" for v in r["quadrature_forms_rel_diff"]) + " |")
            ch = r["check"]
            lines.append(f"| check: RMS(blend K = {ch['k']} - quadrature) [blend's own noise], {ch['points']} points | " + " | ".join(
                f"{q['quad_vs_blend_rms']:.3g} [{q['blend_floor_rms']:.3g}]" for q in ch["quarters"]) + " |")
        for row in r["table"]:
            name = "S_K (grad, the paper's)" if row["form"] == "grad" else row["form"]
            lines.append(f"| {name}, K = {row['k']} | " + " | ".join(fmt(c) for c in row["quarters"]) + " |")
        lines += ["", "Acting estimator at the points with t >= the sampler's switch "
                  f"({args.clean_score_until:g}): error against the same reference (+- se over repeats, relative in brackets), "
                  f"then the drift error it makes in one sampler step, g^2 dt (estimate - reference), in units of that step's "
                  f"noise std g sqrt(dt) (N = {args.num_diffusion_steps})"
                  + (f"; sampled std / exact policy std at {args.policy_states} states, {args.policy_samples} samples each, "
                     f"N = {args.num_diffusion_steps} (exact std {r['acting'][0]['std_ratio']['std_exact']:.3g})" if r["act_dim"] == 1 else "") + ".", ""]
        b_head = " | ".join(f"t in [{lo:g}, {hi:g})" for lo, hi in r["acting_bins"])
        d_head = " | ".join(f"drift err, [{lo:g}, {hi:g})" for lo, hi in r["acting_bins"])
        n_cols = 2 * len(r["acting_bins"]) + (r["act_dim"] == 1)
        lines += [f"| acting estimator | {b_head} | {d_head} |" + (" std ratio +- se |" if r["act_dim"] == 1 else ""),
                  "|---|" + "---|" * n_cols]
        if r["act_dim"] > 1:
            lines.append("| reference noise | " + " | ".join(f"{f['rms']:.3g}" for f in r["acting_floor"]) + " |" + " |" * (n_cols - 2))
        for row in r["acting"]:
            extra = f" {row['std_ratio']['ratio']:.3f} +- {row['std_ratio']['se']:.3f} |" if "std_ratio" in row else ""
            lines.append(f"| {row['form']}, K = {row['k']} | " + " | ".join(f"{c['rms']:.3g} +- {c['se']:.2g} ({c['rel']:.2g})"
                                                                           for c in row["bins"])
                         + " | " + " | ".join(f"{c['rms']:.3g}" for c in row["drift_bins"]) + " |" + extra)
        lines += ["", "Per quarter on its own, the smallest K at which each form is at least as accurate as S_K at K = "
                  f"{args.sk_k}: " + "; ".join(f"{form} " + ", ".join(str(k) for k in v)
                                               for form, v in per_quarter_picks(r["table"]).items()) + "."]
        lines += ["", "Picks: " + ", ".join(f"{k} = {v}" for k, v in r["picks"].items()) +
                  " (None: no K in the rows qualifies). Target: the smallest K whose RMS is at most S_K's at K = "
                  f"{args.sk_k} in every quarter; acting: the smallest K within twice the combined standard error of K = "
                  f"{args.acting_base}.", ""]
    return "\n".join(lines)


def main():
    args = parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    command = " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "1"), "python",
                        os.path.relpath(sys.argv[0]), shlex.join(sys.argv[1:])])
    if args.render:  # the numbers and the command that made them, with the options of that command
        with open(args.out + ".json") as f:
            saved = json.load(f)
        command, results = saved["command"], saved["results"]
        out = args.out
        args = parse_args(shlex.split(command)[3:])  # after OMP_NUM_THREADS=n python <script>
        args.out, args.render = out, True
    else:
        if not args.checkpoints:
            sys.exit("error: give at least one checkpoint (or --render)")
        results = [run_checkpoint(path, args) for path in args.checkpoints]
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump({"command": command, "results": results}, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(results, command, args))
    print(f"wrote {args.out}.md" + ("" if args.render else f" and {args.out}.json"))


if __name__ == "__main__":
    main()
