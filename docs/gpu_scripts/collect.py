# dump the eval and training-return curves of every run under ROOT/runs to one JSON file:
#   python docs/gpu_scripts/collect.py ROOT OUT.json [NAME_PART]   (only runs whose name contains NAME_PART)
import glob, json, os, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for d in sorted(glob.glob(os.path.join(sys.argv[1], "runs", "*"))):
    if len(sys.argv) > 3 and sys.argv[3] not in os.path.basename(d):
        continue
    ea = EventAccumulator(d, size_guidance={"scalars": 0}).Reload()
    tags = ea.Tags()["scalars"]
    out[os.path.basename(d)] = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags
                                if t in ("eval/episodic_return", "charts/episodic_return", "charts/SPS", "losses/score_target_ess", "losses/qf1_values")
                                or t.startswith("shadow/")}
    s = os.path.join(d, "summary.json")
    if os.path.exists(s):
        out[os.path.basename(d)]["summary"] = json.load(open(s))
json.dump(out, open(sys.argv[2], "w"))
for k, v in out.items():
    ev = v.get("eval/episodic_return", [])
    sps = v.get("charts/SPS", [])
    print(k, "last eval", ev[-3:], "sps", sps[-1] if sps else None)
