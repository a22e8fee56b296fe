#!/usr/bin/env bash
# The one command for a bare GPU machine (docs/gpu_kit.md): install the GPU kit with no network, then the step
# bench, then the grid (replicate --scale gpu; docs/gpu_kit.md). Every log and result goes to $OUT (the device tool's
# folder that comes back; else result/gpu_kit_run), at most 8 files, none deeper than $OUT/NAME.
#   bash bench/gpu_kit_run.sh [KIT]          # KIT: the packed folder, default .gpu_kit (carry it)
# Environment: BENCH_ARGS (default: every contender, --budget-s 90 --deadline-s 120), BENCH_TIMEOUT_S (150),
#   GRID_ARGS (--scale gpu), GRID_TIMEOUT_S (420), GRID_OUT (/tmp/s3prl_colld_grid), SKIP_BENCH=1, SKIP_GRID=1,
#   PYTHON (python3: on the GPU image /opt/torch/.venv/bin/python3, which holds torch).
set -uo pipefail
cd "$(dirname "$0")/.."
kit=${1:-.gpu_kit}
out=${OUT:-result/gpu_kit_run}
py=${PYTHON:-python3}
grid_out=${GRID_OUT:-/tmp/s3prl_colld_grid}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
note() { echo "[gpu_kit_run $(date -u +%H:%M:%S), ${SECONDS}s] $*" | tee -a "$summary"; }

note "repository $(git rev-parse --short HEAD 2>/dev/null || echo '?'); kit $kit; results in $out"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi: not available"
  "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda",
torch.version.cuda, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  nproc
  "$py" -m s3prl_colld.gpu_kit install "$kit"
} >"$out/install.log" 2>&1
rc=$?
tail -n 3 "$out/install.log"
note "install: exit $rc"
if [ $rc -ne 0 ]; then
  note "the kit did not install; see install.log"
  exit $rc
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  timeout -k 20 --signal=INT "${BENCH_TIMEOUT_S:-150}" "$py" bench/bench_gpu_step.py --json "$out/bench_gpu_step.json" \
      ${BENCH_ARGS:---budget-s 90 --deadline-s 120} >"$out/bench_gpu_step.log" 2>&1
  note "step bench: exit $?"
  sed -n '/^| contender | ms/,/^$/p; /^fastest/p' "$out/bench_gpu_step.log" | tee -a "$summary"
fi

if [ "${SKIP_GRID:-0}" != 1 ]; then
  # shellcheck disable=SC2086
  if "$py" -m s3prl_colld.replicate ${GRID_ARGS:---scale gpu} --help >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    timeout -k 20 --signal=INT "${GRID_TIMEOUT_S:-420}" "$py" -m s3prl_colld.gpu_kit run "$kit" -- \
        ${GRID_ARGS:---scale gpu} --out "$grid_out" >"$out/grid.log" 2>&1
    grid_rc=$?
    note "grid: exit $grid_rc"
    if [ $grid_rc -ne 0 ] && [ ! -f "$grid_out/results.md" ]; then  # cut short: report the stages that finished
      # shellcheck disable=SC2086
      timeout -k 10 60 "$py" -m s3prl_colld.gpu_kit run "$kit" -- ${GRID_ARGS:---scale gpu} --out "$grid_out" \
          --report-only >>"$out/grid.log" 2>&1
      note "grid report of the finished stages: exit $?"
    fi
    for f in results.md results.json; do
      [ -f "$grid_out/$f" ] && cp "$grid_out/$f" "$out/$f"
    done
    # the grid's small files (logs, plots, per-stage json; no checkpoints or audio), for a look afterwards
    (cd "$grid_out" 2>/dev/null && find . -type f \( -name '*.json' -o -name '*.md' -o -name '*.log' -o -name '*.png' \
        -o -name '*.txt' -o -name '*.yaml' \) -size -2M -print0 | tar --null -czf - -T - 2>/dev/null) \
        >"$out/grid_files.tar.gz" || true
  else
    note "grid: skipped: replicate does not accept '${GRID_ARGS:---scale gpu}' yet"
  fi
fi
note "done"
