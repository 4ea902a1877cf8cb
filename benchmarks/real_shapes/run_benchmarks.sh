#!/usr/bin/env bash
# The runs behind benchmarks/results/real_shapes/epochs_N: every method on the three object-disjoint splits of the
# real-shape evaluation set with the real-object backbone, full fine-tuning and the linear probe with the synthetic
# one, N epochs each (default 12), then the summary. About 24 minutes a split at 12 epochs on 2 CPU cores; a killed
# run continues where it stopped (--resume).
#   bash benchmarks/real_shapes/run_benchmarks.sh [EPOCHS [REAL_BACKBONE]]
# The real-object backbone's rows go to shipped_backbone/: the real_backbone/ folders of epochs_6 and epochs_12 were
# made with the first, 20-epoch weights of pointmae-real-small (benchmarks/results/real_shapes/pretrain_first/).
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${1:-12}
REAL=${2:-hf_point_peft:embedded/pointmae-real-small}
OUT=benchmarks/results/real_shapes/epochs_$EPOCHS
for split in 0 1 2; do
  point-peft benchmark --dataset disk --data-path "data/real_shapes/split_$split" --backbone "$REAL" \
    --methods full linear lora pointgst point-prompt any2point scratch --epochs "$EPOCHS" --cost-rounds 1 \
    --output-dir "$OUT/shipped_backbone/split_$split" --resume --no-progress
  point-peft benchmark --dataset disk --data-path "data/real_shapes/split_$split" --backbone embedded \
    --methods full linear --epochs "$EPOCHS" --cost-rounds 1 --output-dir "$OUT/synthetic_backbone/split_$split" \
    --resume --no-progress
done
python benchmarks/real_shapes/summarise.py --run "real=$OUT/shipped_backbone" --run "synthetic=$OUT/synthetic_backbone" \
  --new real --old synthetic --out "$OUT/summary_shipped_seed0"
