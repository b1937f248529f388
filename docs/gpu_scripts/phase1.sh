# phase 1: correctness on CUDA, component benchmark, SPS of each script alone; then start training runs
# (the bench line ran in the first call; the env runs failed there on MUJOCO_GL=egl and were rerun without it)
set -x
source gpu/setup.sh
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch, gymnasium, mujoco, tyro; print(torch.__version__, gymnasium.__version__, mujoco.__version__, torch.cuda.is_available())"
W=$(pwd); mkdir -p $OUT/p1 /tmp/sps && cd /tmp/sps

# CUDA smoke: updates, eval, checkpoint
python3 $W/dqs.py --env-id Hopper-v4 --total-timesteps 400 --learning-starts 200 --eval-every 300 --eval-episodes 1 --num-mc-samples 64 --num-diffusion-steps 5 --save-model 2>&1 | tail -2
cd $W
python3 bench.py --device cuda --repeats 9 2>&1 | tee $OUT/p1/bench_cuda.md
cd /tmp/sps
python3 $W/sac_baseline.py --env-id Humanoid-v4 --learning-starts 1000 --total-timesteps 5000 --eval-every 1000000 --eval-episodes 1 --exp-name sps_sac 2>&1 | tail -1
python3 $W/dqs.py --env-id Humanoid-v4 --learning-starts 1000 --total-timesteps 2500 --eval-every 1000000 --eval-episodes 1 --exp-name sps_dqs 2>&1 | tail -1
python3 -c "
import json,glob
for f in sorted(glob.glob('runs/*/summary.json')):
    s=json.load(open(f)); print(s['algo'], s['env_id'], 'K', s['args'].get('num_mc_samples'), 'N', s['args'].get('num_diffusion_steps'), 'update_sps %.1f' % (s['update_sps'] or 0), 'sps %.1f' % s['sps'])
" | tee $OUT/p1/sps.txt
# long runs in the background (setsid: they outlive this call while the machine is held)
mkdir -p /tmp/train && cd /tmp/train
setsid nohup python3 $W/sac_baseline.py --env-id Humanoid-v4 --eval-every 10000 --eval-episodes 5 --save-model > sac.log 2>&1 < /dev/null &
setsid nohup python3 $W/dqs.py --env-id Humanoid-v4 --eval-every 10000 --eval-episodes 5 --save-model --temperature 0.05 --exp-name dqs_T0.05 > dqs_a.log 2>&1 < /dev/null &
setsid nohup python3 $W/dqs.py --env-id Humanoid-v4 --eval-every 10000 --eval-episodes 5 --save-model --temperature 0.5 --exp-name dqs_T0.5 > dqs_b.log 2>&1 < /dev/null &
sleep 20; tail -c 300 *.log
