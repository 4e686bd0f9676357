#!/usr/bin/env bash
# Every GPU check and benchmark of the repo in one command, for a machine with one CUDA GPU and a
# plain python3 that holds torch + triton (no uv, no venv, no git checkout needed).
#
#   bash benchmarks/gpu_session.sh [STEP...]   (default: tests trajectory kernels throughput; also eval)
#
# Run from anywhere; it works from the repo root. Results and the whole log go to $OUT
# (default: a new temp dir): kernels-<gpu>.{md,csv,png}, throughput-<gpu>.{md,csv}, session.log.
# Each step runs under its own time limit (timeout -s INT, so the benchmarks still write what they
# measured); a failing step marks the session failed and the next step still runs. Exit status:
# 0 when every step passed, 1 otherwise.
#
# Expected on one H100 (estimates, not yet measured): tests 1-2 min, kernels 2.5-3.5 min (the
# shapes that have targets), throughput about 1 min. The limits (140 + 250 + 130 s, plus 15 s
# each to die after SIGINT) keep the whole run inside one 10-minute device command. Override:
# TESTS_LIMIT, KERNELS_LIMIT, THROUGHPUT_LIMIT (seconds); KERNEL_ARGS (bench_kernels flags,
# default "--targets-only"; KERNEL_ARGS= runs every shape); THROUGHPUT_ARGS (replaces the
# throughput flags below); PYTHON (default python3); BENCH_GIT_REV (the git revision to record:
# the device copy of the tree has no .git).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$(mktemp -d -t gpu_session.XXXXXX)}
mkdir -p "$OUT"
LOG=$OUT/session.log
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: >"$LOG"

say() { echo "$*" | tee -a "$LOG"; }

pythonpath=""
for dir in "$ROOT"/packages/*/src "$ROOT/apps/pretrain/src" "$ROOT"; do  # root: tools, benchmarks
    pythonpath="$pythonpath:$dir"
done
# Wheels carried in .whl/ (liger-kernel, pytest: see benchmarks/README.md) go to /tmp/site.
if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$ROOT"/.whl/*.whl 2>&1 | tee -a "$LOG"; then
        pythonpath="/tmp/site$pythonpath"
        say "installed carried wheels: $(cd "$ROOT/.whl" && echo *.whl)"
    else
        say "WARNING: installing the wheels in .whl/ failed"
    fi
fi
export PYTHONPATH="${pythonpath#:}${PYTHONPATH:+:$PYTHONPATH}"

status=0
failed=()
summary=()

# step NAME LIMIT_SECONDS COMMAND...: run, log, time; record a failure without stopping.
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    say "=== $name (limit ${limit}s): $*"
    timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=$?
    [ "$rc" -eq 124 ] && say "=== $name: TIMED OUT after ${limit}s"
    say "=== $name: exit $rc after $((SECONDS - start))s"
    summary+=("$name: exit $rc, $((SECONDS - start))s")
    if [ "$rc" -ne 0 ]; then
        status=1
        failed+=("$name")
    fi
}

say "=== preflight: $(date -u '+%Y-%m-%d %H:%M UTC'), out: $OUT"
nvidia-smi -L 2>&1 | tee -a "$LOG"
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import sys

import torch
import triton

cuda = torch.cuda.is_available()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}, "
      f"cuda: {torch.cuda.get_device_name() if cuda else 'NOT AVAILABLE'}")
EOF

# llm-kernels' tests carry no gpu mark (CI runs them in Triton's interpreter): here all of them
# run on CUDA with compiled kernels. The other packages: only their gpu-marked tests.
gpu_tests() {
    "$PY" -m pytest -p no:cacheprovider -q packages/llm-kernels
    local kernels=$?
    [ "$kernels" -eq 2 ] && return 2 # interrupted (the step's time limit): stop here
    "$PY" -m pytest -p no:cacheprovider -q -m gpu packages/llm-model packages/llm-train
    local others=$?
    return $((kernels != 0 || others != 0))
}
export -f gpu_tests
export PY
# GPT-2 124M at seq 1024 and Llama 3.2 1B at seq 2048, each with llm-kernels and without, compiled.
THROUGHPUT_ARGS=${THROUGHPUT_ARGS:-"--presets gpt2-124m:vocab_size=50304 gpt2-124m:vocab_size=50304,kernels=false llama-1b \
llama-1b:kernels=false --seq-len 1024 1024 2048 2048 --batch-size 32 32 4 4 --steps 15 --warmup 4 \
--compile --no-plot"}  # no plot: the device tool brings back at most 8 files

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests trajectory kernels throughput)
for name in "${steps[@]}"; do
    case $name in
    tests)
        if ! "$PY" -c "import pytest" 2>/dev/null; then
            say "=== tests: pytest is not installed here: carry its wheel in .whl/ (benchmarks/README.md)"
            status=1
            failed+=("tests (no pytest)")
            continue
        fi
        step tests "${TESTS_LIMIT:-90}" bash -c gpu_tests
        ;;
    trajectory)
        # A few hundred bf16 steps with llm-kernels on and off (and fp32): the curves must agree.
        step trajectory "${TRAJECTORY_LIMIT:-70}" "$PY" -m benchmarks.trajectory.bench_trajectory \
            --out "$OUT" ${TRAJECTORY_ARGS-}
        ;;
    kernels)
        # shellcheck disable=SC2086  # KERNEL_ARGS is a list of flags
        step kernels "${KERNELS_LIMIT:-200}" "$PY" -m benchmarks.kernels.bench_kernels \
            --out "$OUT" ${KERNEL_ARGS---targets-only}
        ;;
    sweep)
        # RMSNorm backward: programs per SM (the setting behind llm_kernels' default).
        step sweep "${SWEEP_LIMIT:-45}" "$PY" -m benchmarks.kernels.sweep_rms_bwd
        ;;
    sweep_ce)
        # Fused linear CE: logits chunk against time and peak memory (behind its default chunk).
        step sweep_ce "${SWEEP_CE_LIMIT:-90}" "$PY" -m benchmarks.kernels.sweep_linear_ce
        ;;
    profile)
        # Per-kernel CUDA time of llm_kernels and the other providers (explains missed targets).
        # shellcheck disable=SC2086  # PROFILE_ARGS is a list of flags
        step profile "${PROFILE_LIMIT:-80}" "$PY" -m benchmarks.kernels.profile_kernels \
            ${PROFILE_ARGS-}
        ;;
    eval)
        # The eval suite with gpt2-124m, bf16 (issue target: ~19,500 items in < 20 s on an H100).
        # Needs the tokenizers wheel in .whl/ and a tokenizer.json (EVAL_TOKENIZER, default the
        # sample run's); EVAL_TASKS is the task folder (default: the sample's 5 x 200 items).
        # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
        step eval "${EVAL_LIMIT:-90}" "$PY" -m benchmarks.eval.bench_suite \
            --tasks-dir "${EVAL_TASKS:-data/sample/eval}" --out "$OUT/suite.md" \
            ${EVAL_TOKENIZER:+--tokenizer "$EVAL_TOKENIZER"} ${EVAL_ARGS-}
        ;;
    throughput)
        # llama-1b with llm-kernels (the default) and without, same shapes: one table.
        # shellcheck disable=SC2086  # THROUGHPUT_ARGS is a list of flags
        step throughput "${THROUGHPUT_LIMIT:-170}" "$PY" -m benchmarks.throughput.bench_throughput \
            $THROUGHPUT_ARGS --out-dir "$OUT"
        ;;
    *)
        say "unknown step '$name' (known: tests trajectory kernels sweep sweep_ce profile throughput)"
        status=1
        failed+=("$name (unknown)")
        ;;
    esac
done

say "=== summary"
for line in ${summary[@]+"${summary[@]}"}; do say "  $line"; done
if [ "$status" -ne 0 ]; then
    say "=== FAILED: ${failed[*]}"
else
    say "=== all steps passed"
fi
say "=== files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"
