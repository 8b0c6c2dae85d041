#!/usr/bin/env bash
# sknap's GPU check: versions and card, install, then benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                                   # GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --small --no-install  # dry run
#
# Writes one report, ${OUT:-.}/gpu_report.md (markdown: versions, a summary
# table of the ratios and their goals, one section per measurement, every
# figure as JSON), and prints it at the end. Needs no network. Every step is
# guarded: a failure is written into the report and the next step runs; the
# whole run stays under --seconds (default 235) with `timeout`.
#
# Options: --device {cuda,cpu} (default cuda), --small (dry-run sizes),
# --no-install (use the sknap already importable), --seconds N; anything else
# goes to gpu_check.py (e.g. --only entropy overhead, --images 2048).

set -u
start=$(date +%s)
command_line="bash benchmarks/gpu_check.sh${*:+ $*}"
device=cuda
small=()
install=1
budget=235
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --device=*) device="${1#*=}"; shift ;;
        --small) small=(--small); shift ;;
        --no-install) install=0; shift ;;
        --seconds) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) extra+=("$1"); shift ;;
    esac
done

out="${OUT:-.}"
mkdir -p "$out" || exit 2
report="$(cd "$out" && pwd)/gpu_report.md"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2
py="${PYTHON:-$(command -v python || command -v python3)}"
elapsed() { echo $(( $(date +%s) - start )); }

{
    echo "# sknap GPU check"
    echo
    commit=$(git rev-parse --short HEAD 2>/dev/null) || commit="unknown"
    if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
        commit="$commit (with uncommitted changes)"
    fi
    echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n), commit $commit," \
        "\`$command_line\` (device $device)."
    echo
    echo "## Setup"
    echo
} > "$report"

note() { echo "$*" | tee -a "$report"; }

# 1. Versions and the card, first (each import guarded).
versions=$(timeout -k 5 60 "$py" - <<'EOF' 2>&1
import platform, sys
from importlib import metadata
print(f"- python {platform.python_version()} ({sys.executable})")
def version(name):
    try:
        return metadata.version(name)
    except Exception:
        return "not installed"
for name in ["numpy", "scipy", "scikit-learn", "numba", "torchvision", "timm"]:
    print(f"- {name} {version(name)}")
try:
    import torch
    print(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"- card: **{p.name}**, {p.total_memory / 2**30:.0f} GiB, "
              f"compute capability {p.major}.{p.minor}, "
              f"{torch.cuda.device_count()} device(s)")
    else:
        print("- card: none (torch.cuda.is_available() is False)")
    print(f"- CPU: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads")
except Exception as exc:
    print(f"- torch: not importable ({type(exc).__name__}: {exc})")
EOF
)
note "$versions"
if command -v nvidia-smi >/dev/null 2>&1; then
    smi=$(timeout 15 nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader 2>&1 | head -4)
    note "- nvidia-smi: $smi"
fi

# 2. Install sknap (no network: no dependencies, no build isolation).
if [ "$install" = 1 ]; then
    log=$(mktemp)
    if timeout -k 5 120 "$py" -m pip install --no-deps --no-build-isolation \
        --no-index --disable-pip-version-check . >"$log" 2>&1; then
        note "- install: \`pip install --no-deps --no-build-isolation .\` ok ($(elapsed) s in)"
    else
        note "- install: **failed** (exit $?); running from the source tree. Last lines:"
        { echo; echo '```'; tail -15 "$log"; echo '```'; echo; } | tee -a "$report"
    fi
    rm -f "$log"
else
    note "- install: skipped (--no-install)"
fi
# Where sknap comes from, without importing it (torch takes seconds).
where='import importlib.util as u; s = u.find_spec("sknap"); print(s.origin if s else "")'
if [ -z "$("$py" -c "$where" 2>/dev/null)" ]; then
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
    note "- sknap is not installed: PYTHONPATH=$repo"
fi
note "- sknap from $("$py" -c "$where" 2>&1 | tail -1)"
echo >> "$report"

# 3. The measurements, under what is left of the budget.
left=$(( budget - $(elapsed) - 5 ))
if [ "$left" -lt 20 ]; then
    note "**gpu_check.py not run: only $left s left of $budget s.**"
    rc=3
else
    timeout -k 5 "$left" "$py" benchmarks/gpu_check.py --device "$device" \
        "${small[@]}" --report "$report" --seconds $(( left - 10 )) "${extra[@]}"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        {
            echo
            echo "## Exit"
            echo
            echo "gpu_check.py exited with $rc$([ $rc = 124 ] && echo ' (killed by timeout after' "$left s)")."
        } >> "$report"
    fi
fi
echo "==================== $report ($(elapsed) s) ===================="
sed '/^## Figures (JSON)/,$d' "$report"
exit "$rc"
