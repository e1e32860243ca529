#!/usr/bin/env bash
# One-change-at-a-time ablation of the training recipe: each variant fine-tunes the shipped model for the
# same short schedule (the same data order, seed and lr) with ONE config key changed, then all of them
# are scored together on the training dev split (never the WIDER evaluation images).
#   bash scripts/ablate.sh [EPOCHS [NAME...]]   -> runs/ablate/<name>/, runs/ablate/table.md
# (docs/eval/ablation.md records each table with what it decided).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-6}
FS=.venv/bin/facestream
COMMON=(--epochs "$EPOCHS" --set init=models/weights/fsdet-m.safetensors --set lr=5e-4 --set warmup_iters=50
        --set eval_every=1000 --set checkpoint_every_s=600)
declare -A CHANGE=(
  [base]=""
  [neg-weight-2]="--set neg_weight=2.0"
  [background-windows]="--set face_window_prob=0.5"
  [fills-as-ignore]="--set sources.0.fill_as=ignore"
  # fine-tune without the backward pass of the high-resolution layers (their BatchNorm statistics frozen too)
  [freeze-stem-s4]="--set freeze=[\"backbone.stem\",\"backbone.s4\"]"
  [freeze-to-s8]="--set freeze=[\"backbone.stem\",\"backbone.s4\",\"backbone.s8\"]"
  # larger windows (fewer large faces cut at the window's edge), paid for by the frozen high-resolution layers
  [window-384-frozen]="--set window=384 --set freeze=[\"backbone.stem\",\"backbone.s4\",\"backbone.s8\"]"
  # windows centred on the shipped model's own false boxes (`facestream mine-negatives`, scripts/mine_negatives.sh)
  [hard-negatives]="--set hard_negatives=work-data/hard-negatives.json --set hard_negative_prob=0.25"
  # windows of 512 (large faces whole, more context), with the frozen high-resolution layers
  [window-512-frozen]="--set window=512 --set freeze=[\"backbone.stem\",\"backbone.s4\",\"backbone.s8\"]"
  # bf16 autocast on a CPU with AMX / AVX512-BF16 (a speed change: it must tie fp32)
  [cpu-bf16]="--set cpu_bf16=true"
  # capacity at stride 8 (where most faces are detected): one more block there, its stage unfrozen (compare with
  # freeze-stem-s4, the same freeze without the block)
  [deepen-s8]="--set freeze=[\"backbone.stem\",\"backbone.s4\"] --set deepen=[1,3,2,2]"
  # the face-mask sets' human boxes as drawn (head boxes), not snapped to WIDER's convention
  [human-boxes]="--set sources.1.labels=../shared/data/train/facemask-web/labels.txt --set sources.1.fill=../shared/data/teacher-labels/facemask-web-fill.txt --set sources.2.labels=../shared/data/train/facemask-web-2/labels.txt --set sources.2.fill=../shared/data/teacher-labels/facemask-web-2-fill.txt"
)
ORDER=(base neg-weight-2 background-windows fills-as-ignore human-boxes freeze-stem-s4 freeze-to-s8 hard-negatives window-384-frozen window-512-frozen cpu-bf16 deepen-s8)
[ $# -gt 1 ] && ORDER=("${@:2}")
set -f  # the changes' TOML lists are not glob patterns
for name in "${ORDER[@]}"; do
  [ -f "runs/ablate/$name/last.safetensors" ] && grep -q "\"epoch\": $EPOCHS," "runs/ablate/$name/log.jsonl" && continue
  # shellcheck disable=SC2086
  OMP_WAIT_POLICY=PASSIVE $FS train configs/fsdet-m.toml --out "runs/ablate/$name" "${COMMON[@]}" ${CHANGE[$name]}
done
models=()
for name in "${ORDER[@]}"; do models+=(--model "runs/ablate/$name/last.safetensors"); done
{ echo "# Recipe ablation: $EPOCHS epochs from the shipped model at lr 5e-4, one change each (\`bash scripts/ablate.sh $EPOCHS ${ORDER[*]}\`)"
  echo
  for name in "${ORDER[@]}"; do echo "- $name: \`${CHANGE[$name]:-(the shipped recipe)}\`"; done
  echo
  $FS eval dev "${models[@]}" --config configs/fsdet-m.toml; } | tee runs/ablate/table.md
