#!/usr/bin/env bash
# More seeds for the real-shape evaluation: the given methods (default: full fine-tuning and training from scratch,
# the pair behind the "new backbone beats scratch by 10 points" target) on the three object-disjoint splits with
# another seed, into benchmarks/results/real_shapes/epochs_N/<shipped|synthetic>_backbone_seedS; the summary pools these
# runs with seed 0's (summarise.py, a --run name given more than once). BACKBONE=synthetic runs the old, synthetic-shape
# backbone (`embedded`) instead of the real-object one; BACKBONE=FOLDER runs a backbone folder written by
# `point-peft pretrain`, into <folder name>_backbone_seedS. About 15 minutes a split for the default pair at 12 epochs
# on 2 CPU cores; a killed run continues where it stopped (--resume).
#   [BACKBONE=real|synthetic|FOLDER] bash benchmarks/real_shapes/run_seed.sh EPOCHS SEED [METHOD ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
EPOCHS=${1:?epochs}
SEED=${2:?seed}
shift 2
[ $# -gt 0 ] && METHODS=("$@") || METHODS=(full scratch)
LABEL=${BACKBONE:-real}
case $LABEL in
  real) MODEL=hf_point_peft:embedded/pointmae-real-small LABEL=shipped ;;  # real_backbone_seed1: the first weights
  synthetic) MODEL=embedded ;;
  *)
    [ -f "$LABEL/config.json" ] || { echo "BACKBONE must be real, synthetic or a backbone folder, got '$LABEL'" >&2; exit 2; }
    MODEL=$LABEL
    LABEL=$(basename "$LABEL")
    ;;
esac
OUT=benchmarks/results/real_shapes/epochs_$EPOCHS/${LABEL}_backbone_seed$SEED
for split in 0 1 2; do
  point-peft benchmark --dataset disk --data-path "data/real_shapes/split_$split" --backbone "$MODEL" \
    --methods "${METHODS[@]}" --epochs "$EPOCHS" --seed "$SEED" --cost-rounds 1 --output-dir "$OUT/split_$split" \
    --resume --no-progress
done
