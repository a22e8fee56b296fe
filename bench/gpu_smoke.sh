#!/usr/bin/env bash
# Every CLI once at toy size on a GPU (or DEVICE=cpu): hubert_tiny teacher, CoLLD in bf16, DistilHuBERT in fp16
# under torchrun, then PR / ASR / ST probes of the CoLLD student (train, then evaluate on test).
#   python -m s3prl_colld.data.synth --lang en --out CORPUS --utterances 60   # on a machine with espeak-ng/flite
#   bash bench/gpu_smoke.sh CORPUS OUTDIR
set -euo pipefail
corpus=$1
out=$2
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
cd "$(dirname "$0")/.."
run() { echo ">> $*"; local t=$SECONDS; "$@"; echo "<< $((SECONDS - t)) s"; }
pre="config.data.root=$corpus,,config.runner.total_steps=20,,config.runner.save_step=20,,config.runner.log_step=10"
pre="$pre,,config.runner.device=$device,,config.runner.progress_bar=false,,config.runner.num_workers=2"
run "$py" run_pretrain.py -u hubert_tiny -p "$out/teacher" -o "$pre,,config.units.n_clusters=8"
teacher="$out/teacher/states-20.ckpt"
run "$py" run_pretrain.py -u colld_distiller -p "$out/colld_bf16" \
    -o "$pre,,config.teacher.ckpt=$teacher,,config.runner.precision=bf16"
run "$py" -m s3prl_colld.launch --standalone --nproc_per_node 1 run_pretrain.py -u distilhubert -p "$out/distil_fp16" \
    -o "$pre,,config.teacher.ckpt=$teacher,,config.runner.precision=fp16"
student="$out/colld_bf16/states-20.ckpt"
for task in pr asr st; do
  run "$py" run_downstream.py -m train -u colld_local -k "$student" -d "$task" -p "$out/$task" \
      -o "config.data.root=$corpus,,config.runner.total_steps=20,,config.runner.eval_step=10,,config.runner.log_step=10,,config.runner.device=$device,,config.runner.progress_bar=false"
  run "$py" run_downstream.py -m evaluate -e "$out/$task/dev-best.ckpt" -t test
done
echo "gpu_smoke: every CLI ran on $device"
