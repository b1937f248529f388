#!/usr/bin/env bash
# The GPU rows of docs/speed.md and the checks of --cudagraphs, in one pass of about 8 minutes on one GPU.
#
#     OUT=gpu_results bash docs/scripts/gpu_speed.sh
#
# Writes under $OUT: the CUDA tests' log, benchmark/speed.py's tables (the parts over K and N, and float32 against
# TF32 and bf16 on critics of a short run), the env steps per second of both scripts eager against
# --cudagraphs and against --compile at the paper's K = 1000 on Humanoid-v4, and the first minutes of a
# DQS run at the paper's defaults on InvertedPendulum-v4 with --cudagraphs.
set -u -o pipefail
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

# 1. --cudagraphs against eager: same parameters after graphed updates, fresh noise on every replay
python -m pytest test_dqs.py -q -k "cuda_graphed" 2>&1 | tee "$OUT/test_cuda.txt"

# 2. the parts, and whether TF32 moves the score target by less than its own Monte-Carlo spread
python benchmark/speed.py --device cuda --ks 64 256 1000 4096 --ns 20 50 --repeats 7 2>&1 | tee "$OUT/bench_cuda.md"
python dqs.py --env-id InvertedPendulum-v4 --total-timesteps 3000 --learning-starts 2000 --num-mc-samples 64 \
    --eval-every 3000 --eval-episodes 1 --save-model --exp-name precision_ckpt >/dev/null 2>&1
python benchmark/speed.py --device cuda --precision --ks 64 1000 --checkpoint runs/InvertedPendulum-v4__precision_ckpt__*/precision_ckpt.pt \
    2>&1 | tee "$OUT/bench_precision_cuda.md"

# 3. env steps per second, Humanoid-v4, K = 1000, one run each way (the lever's gain is the ratio)
for flags in --cudagraphs --compile "--cudagraphs --matmul-precision high"; do
    timeout 150 python docs/scripts/sps_scripts.py --device cuda --dqs-k 1000 --repeats 1 --flags="$flags" 2>&1 \
        | tee -a "$OUT/sps_cuda.md"
done

# 4. the paper's defaults (K = 1000, N = 50) on InvertedPendulum-v4, graphed, for what is left of the time
timeout 120 python dqs.py --env-id InvertedPendulum-v4 --cudagraphs --learning-starts 5000 --total-timesteps 30000 \
    --eval-every 2500 --eval-episodes 5 --exp-name paper_defaults_graphed 2>&1 | tail -n 3 | tee "$OUT/ip_k1000.txt"
cp -r runs/InvertedPendulum-v4__paper_defaults_graphed__* "$OUT/" 2>/dev/null
exit 0
