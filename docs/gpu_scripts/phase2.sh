source gpu/setup.sh
W=$(pwd); cd /tmp/train
pkill -INT -f "exp-name dqs_T0.5"
setsid nohup python3 $W/sac_baseline.py --env-id InvertedPendulum-v4 --eval-every 2000 --eval-episodes 5 --exp-name sac_ip > sac_ip.log 2>&1 < /dev/null &
setsid nohup python3 $W/dqs.py --env-id InvertedPendulum-v4 --learning-starts 5000 --eval-every 2000 --eval-episodes 5 --exp-name dqs_ip > dqs_ip.log 2>&1 < /dev/null &
sleep ${1:-480}
python3 $W/gpu/collect.py /tmp/train $OUT/curves.json
tail -c 200 *.log
