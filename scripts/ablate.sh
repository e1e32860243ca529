#!/usr/bin/env bash
# One-change-at-a-time ablation of the training recipe: each variant fine-tunes the shipped model for the
# same short schedule (the same data order, seed and lr) with ONE config key changed, then all of them
# are scored together on the training dev split (never the WIDER evaluation images).
#   bash scripts/ablate.sh [EPOCHS]        -> runs/ablate/<name>/, docs/eval/ablation.md
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
  # the face-mask sets' human boxes as drawn (head boxes), not snapped to WIDER's convention
  [human-boxes]="--set sources.1.labels=../shared/data/train/facemask-web/labels.txt --set sources.1.fill=../shared/data/teacher-labels/facemask-web-fill.txt --set sources.2.labels=../shared/data/train/facemask-web-2/labels.txt --set sources.2.fill=../shared/data/teacher-labels/facemask-web-2-fill.txt"
)
ORDER=(base neg-weight-2 background-windows fills-as-ignore human-boxes)
for name in "${ORDER[@]}"; do
  [ -f "runs/ablate/$name/last.safetensors" ] && grep -q "\"epoch\": $EPOCHS," "runs/ablate/$name/log.jsonl" && continue
  # shellcheck disable=SC2086
  OMP_WAIT_POLICY=PASSIVE $FS train configs/fsdet-m.toml --out "runs/ablate/$name" "${COMMON[@]}" ${CHANGE[$name]}
done
models=()
for name in "${ORDER[@]}"; do models+=(--model "runs/ablate/$name/last.safetensors"); done
mkdir -p docs/eval
{ echo "# Recipe ablation: $EPOCHS epochs from FSDet-m 1.2.0 at lr 5e-4, one change each (\`bash scripts/ablate.sh $EPOCHS\`)"
  echo
  for name in "${ORDER[@]}"; do echo "- $name: \`${CHANGE[$name]:-(the shipped recipe)}\`"; done
  echo
  $FS eval dev "${models[@]}" --config configs/fsdet-m.toml; } | tee docs/eval/ablation.md
