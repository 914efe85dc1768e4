#!/usr/bin/env bash
# Every GPU check and benchmark of the project in one call (< 8 minutes on one H200), JSON under one folder.
#
#   bench/gpu.sh [OUT_DIR]                      # on a CUDA machine (default OUT_DIR: bench/results/gpu)
#   DEVICE=cpu bench/gpu.sh --smoke [OUT_DIR]   # the same steps at toy sizes on the CPU: checks the script itself
#
# Steps (each under its own time limit; one failing does not stop the others):
#   vectors     tiny ReT-2 vectors on the device vs the CPU (float32, bfloat16); B/32 sizes bf16 vs fp32
#   train       bf16 training of the tiny synthetic config: the loss must fall over 150 steps
#   train-late  the same with late_interaction (run only when this checkout's ReT2Config has the field)
#   encoder     bench/encoder.py, CLIP ViT-B/32 sizes, batch 256, bf16: eager vs eager (target <= 1.15x)
#   encoder-compiled   the same compiled with mode reduce-overhead vs the compiled backbone
#   index       bench/index.py: end-to-end indexing vs pure encoding (B/32-size ReT-2), target >= 0.9
#   generate    bench/generate.py: answers/s and tokens/s, real sizes, bf16 and 4-bit
# summary.json lists every step's status, seconds and JSON file; the exit status is 1 if any failed.
#
# Packages a plain CUDA image lacks (qdrant-client, qdrant-edge-py, bitsandbytes, langchain-core,
# datasets, evaluate, num2words and what they need) are installed from the wheels in $WHEELS
# (default bench/wheels/, filled by bench/fetch_wheels.sh on a machine with PyPI) when missing;
# the script says which it installed and which are still missing.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
if [[ "${1:-}" == "--smoke" ]]; then SMOKE=1; shift; fi
DEVICE=${DEVICE:-cuda}
OUT_DIR=${1:-bench/results/gpu}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-bench/wheels}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)

# ---------------------------------------------------------------- packages
modules=(qdrant_client qdrant_edge bitsandbytes langchain_core datasets evaluate num2words)
missing() { for m in "${modules[@]}"; do "$PY" -c "import $m" 2>/dev/null || echo "$m"; done; }
before=$(missing | tr '\n' ' ')
if [[ -n "$before" ]]; then
  echo "missing Python modules: $before"
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    SITE=${SITE:-/tmp/ret2vqa-site}
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:$SITE"
    after=$(missing | tr '\n' ' ')
    installed=$(comm -23 <(tr ' ' '\n' <<<"$before" | sort -u) <(tr ' ' '\n' <<<"$after" | sort -u) | tr '\n' ' ')
    echo "installed from $WHEELS: ${installed:-none}"
    echo "still missing: ${after:-none}"
  else
    echo "no wheels in $WHEELS (bench/fetch_wheels.sh fetches them); steps that need these modules will fail"
  fi
else
  echo "all optional modules present"
fi
"$PY" - <<EOF >"$OUT_DIR/environment.json"
import json, platform, torch, transformers
print(json.dumps({"device": "$DEVICE", "smoke": bool($SMOKE), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                  "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                  "python": platform.python_version(), "missing_modules_before": "$before".split()}, indent=2))
EOF

# ---------------------------------------------------------------- steps
SUMMARY="$OUT_DIR/summary.tsv"
: >"$SUMMARY"
step() {  # step NAME LIMIT_S JSON COMMAND...
  local name=$1 limit=$2 json=$3; shift 3
  local t0=$(date +%s)
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local status=passed
  if [[ $rc == 124 ]]; then status=timeout; elif [[ $rc != 0 ]]; then status=failed; fi
  tail -n 12 "$OUT_DIR/$name.log"
  echo "--- $name: $status in $(( $(date +%s) - t0 )) s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$json" >>"$SUMMARY"
}

if [[ $SMOKE == 1 ]]; then
  STEPS=20; LATE_STEPS=20; LOSS_RATIO=0.9; ENC=(--backbone clip-tiny --batch-size 4 --rounds 1 --reference-hidden 128)
  INDEX=(--passages 120 --rounds 1 --batch-sizes 16 --ingest-batches 2)
  GEN=(--sizes tiny --families qwen2_5_vl --batch-sizes 1 2 --new-tokens 2 --rounds 1)
  VEC=(--smoke); COMPILE=0
else
  STEPS=150; LATE_STEPS=150; LOSS_RATIO=0.6; ENC=(--backbone clip-vit-b32 --batch-size 256 --rounds 7)
  INDEX=(--backbone clip-vit-b32 --passages 3000 --rounds 2 --batch-sizes 128 256)
  GEN=(--sizes real --families qwen2_5_vl smolvlm llava --batch-sizes 1 8 32 --new-tokens 16 --rounds 1)
  VEC=(); COMPILE=1
fi

step vectors 90 vectors.json "$PY" bench/gpu_checks.py vectors --device "$DEVICE" "${VEC[@]}" --json "$OUT_DIR/vectors.json"
step train 120 train.json "$PY" bench/gpu_checks.py train --steps "$STEPS" --max-loss-ratio "$LOSS_RATIO" --json "$OUT_DIR/train.json" \
  --workdir "$OUT_DIR/work-train"
step train-late 120 train-late.json "$PY" bench/gpu_checks.py train --late-interaction --steps "$LATE_STEPS" \
  --max-loss-ratio "$LOSS_RATIO" \
  --json "$OUT_DIR/train-late.json" --workdir "$OUT_DIR/work-train-late"
step encoder 90 encoder.json "$PY" bench/encoder.py --device "$DEVICE" "${ENC[@]}" --json "$OUT_DIR/encoder.json"
if [[ $COMPILE == 1 ]]; then
  step encoder-compiled 150 encoder-compiled.json "$PY" bench/encoder.py --device "$DEVICE" "${ENC[@]}" --variants \
    --compile reduce-overhead --json "$OUT_DIR/encoder-compiled.json"
fi
step index 90 index.json "$PY" bench/index.py --device "$DEVICE" "${INDEX[@]}" --workdir "$OUT_DIR/work-index" \
  --json "$OUT_DIR/index.json"
step generate 150 generate.json "$PY" bench/generate.py "${GEN[@]}" --json "$OUT_DIR/generate.json"
rm -rf "$OUT_DIR"/work-*

"$PY" - "$SUMMARY" "$OUT_DIR" "$(( $(date +%s) - START ))" <<'EOF'
import json, sys
from pathlib import Path
summary, out, total = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
steps = []
for line in Path(summary).read_text().splitlines():
    name, status, seconds, js = line.split("\t")
    entry = {"step": name, "status": status, "seconds": int(seconds), "json": js}
    path = out / js
    if path.is_file():
        data = json.loads(path.read_text())
        for key in ("ratio", "compiled_ratio", "all_layers_ratio", "encode_only_per_s", "end_to_end_per_s", "passed",
                    "loss_falls", "skipped", "first_loss", "last3_mean_loss"):
            if isinstance(data, dict) and data.get(key) is not None:
                entry[key] = data[key]
    steps.append(entry)
result = {"total_seconds": total, "all_passed": all(s["status"] == "passed" for s in steps), "steps": steps}
(out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
sys.exit(0 if result["all_passed"] else 1)
EOF
rc=$?
rm -f "$SUMMARY"
exit $rc
