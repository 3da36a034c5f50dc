#!/usr/bin/env bash
# One short check on a GPU machine (about 8 minutes on one H200): the autograd BPR, TIGER at the paper's size
# for a fixed budget, the batched beam search, and SASRec, each under its own `timeout`; prints what it measured
# and writes it to $RESULTS/gpu_check.jsonl (one JSON line per part).
#
#   bash bench/gpu_check.sh DATA_DIR [--cpu] [--tiny]
#
# DATA_DIR holds amazon-toys/ and amazon-sports/ (sequences.txt + item2attributes.json) and, optionally,
# ml-100k/ml-100k.inter (without it the BPR part trains on the preference world). Run from the repository root.
# --cpu: everything on the CPU (the same commands with accelerator cpu); --tiny: seconds-long sizes, to check
# the script itself. Needs torch, Lightning, numpy, pandas, scipy, scikit-learn and jsonargparse; not torchrec,
# faiss, gymnasium or fastapi. Environment: PYTHON (the interpreter command, default python3), RESULTS (default
# $OUT, else artifacts/gpu_check), RUNS (the runs' own outputs, default artifacts/gpu_check/runs).
set -u
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then sed -n 2,13p "$0" | sed 's/^# \{0,1\}//'; exit 0; fi
DATA=$1; shift
ACCEL=gpu; DEVICE=cuda; TINY=0
for flag in "$@"; do
  case $flag in
    --cpu) ACCEL=cpu; DEVICE=cpu ;;
    --tiny) TINY=1 ;;
    *) echo "unknown flag $flag (flags: --cpu, --tiny)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-${OUT:-artifacts/gpu_check}}
RUNS=${RUNS:-artifacts/gpu_check/runs}
mkdir -p "$RESULTS" "$RUNS"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
SUMMARY=$RESULTS/gpu_check.jsonl
: > "$SUMMARY"
started=$(date +%s)

note() {  # part, seconds, exit code, metrics file (or -)
  python3 - "$@" <<'PY' | tee -a "$SUMMARY"
import json, sys
part, seconds, code, path = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
row = {"part": part, "wall_s": seconds, "exit": code, "timed_out": code == 124}
try:
    payload = json.load(open(path)) if path != "-" else {}
except (OSError, ValueError):
    payload = {}
if isinstance(payload, dict) and "tiger" in payload:  # discern: {variant: {axis: metrics}}
    payload = payload["tiger"].get("recommendation", {})
row.update({k: round(v, 4) if isinstance(v, float) else v for k, v in payload.items()
            if any(m in k for m in ("recall@", "ndcg@", "ms_per_user", "speedup", "lists_equal", "users", "device"))
            and "sampled" not in k})
print(json.dumps(row))
PY
}

run_part() {  # name, timeout seconds, metrics file, command...
  local name=$1 limit=$2 metrics=$3; shift 3
  echo "== $name (limit ${limit}s): $*" >&2
  local t0; t0=$(date +%s)
  timeout "$limit" "$@" > "$RUNS/$name.log" 2>&1
  local code=$?
  tail -3 "$RUNS/$name.log" >&2
  note "$name" "$(( $(date +%s) - t0 ))" "$code" "$metrics"
}

if [ "$TINY" = 1 ]; then
  BPR_SIZE=(--trainer.max_epochs 2); TIGER_SIZE=(--model.d_model 32 --model.ff_dim 64 --model.encoder_layers 1
  --model.decoder_layers 1 --rqvae.max_epochs 2 --rqvae.codebook_size 16 --rqvae.hidden_dims "[32]"
  --train.max_epochs 1); TIGER_MIN=1; BEAM_SIZE=(--users 64 --reference-users 16); SAS_SIZE=(--trainer.max_epochs 2)
  L_BPR=120; L_TIGER=300; L_BEAM=120; L_SAS=120
else
  BPR_SIZE=(); TIGER_SIZE=(); TIGER_MIN=2.2; BEAM_SIZE=(--reference-users 256); SAS_SIZE=(--trainer.max_time 00:00:00:55)
  L_BPR=50; L_TIGER=210; L_BEAM=70; L_SAS=75  # at most 480 s in all
fi

# 1. BPR with the autograd engine (Adam, lr 0.001, batch 2048, as RecBole), ml-100k if present, else the world.
if [ -f "$DATA/ml-100k/ml-100k.inter" ]; then BPR_DATA=(--data.path "$DATA/ml-100k/ml-100k.inter" --data.format recbole)
else BPR_DATA=(--data.format auto); echo "ml-100k absent: BPR trains on the preference world" >&2; fi
run_part bpr_autograd "$L_BPR" "$RUNS/bpr/metrics.json" $PY -m recsys fit -c configs/recsys/bpr_movielens.yaml \
  "${BPR_DATA[@]}" --model.init_args.engine autograd --model.init_args.optimizer adam --model.init_args.lr 0.001 \
  --data.batch_size 2048 --trainer.accelerator "$ACCEL" --trainer.devices 1 --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$RUNS/bpr" "${BPR_SIZE[@]}"

# 2. TIGER at the paper's size on amazon-toys for a fixed budget (semantic IDs from attribute sets).
run_part tiger_paper_toys "$L_TIGER" "$RUNS/tiger/metrics.json" $PY -m recsys discern \
  -c configs/recsys/tiger_paper.yaml --data.sequences "$DATA/amazon-toys" --out "$RUNS/tiger" \
  --train.accelerator "$ACCEL" --train.max_minutes "$TIGER_MIN" --train.progress false --threads 8 \
  --train.reuse_checkpoints false "${TIGER_SIZE[@]}"

# 3. The batched beam search over the full amazon-toys test at the paper's size (untrained), beam 20.
run_part beam_search "$L_BEAM" "$RUNS/beam_search.json" $PY -m bench.bench_beam_search --data "$DATA/amazon-toys" \
  --device "$DEVICE" --threads 8 --no-write --json "$RUNS/beam_search.json" "${BEAM_SIZE[@]}"

# 4. SASRec on both Amazon files for a fixed budget.
for name in toys sports; do
  if [ -f "$DATA/amazon-$name/sequences.txt" ]; then
    run_part "sasrec_$name" "$L_SAS" "$RUNS/sasrec_$name/metrics.json" $PY -m recsys fit \
      -c configs/recsys/sasrec.yaml --data.path "$DATA/amazon-$name" --trainer.accelerator "$ACCEL" \
      --trainer.enable_progress_bar false --trainer.default_root_dir "$RUNS/sasrec_$name" "${SAS_SIZE[@]}"
  fi
done

echo "== summary (${ACCEL}, $(( $(date +%s) - started )) s in all; $SUMMARY)"
cat "$SUMMARY"
