#!/usr/bin/env bash
# Model merging on closefar:chain (the knowledge-retention task; docs/results/retention.md): does merging
# the pre-trained teacher with its vanilla fine-tuned student keep the teacher's FAR skill (which the
# student forgot) and the student's corridor return? `rlsuite merge` with average, permute and cca
# (Horoi et al., ICML 2024, arXiv 2407.05385), cca at the default gamma 0.1 and at 0.01 and 0.001.
# The teacher and the students are trained exactly as experiments/retention_closefar.sh trains its
# teacher-ppo and ppo/none-s* runs (own folders here, so that study's runs are never touched).
# Every model is evaluated greedily on 20 games from CLOSE starts (final return; best 1.5) and 20 from
# FAR starts (FAR success), as the retention study's FAR evaluation. Measured: 9.4 CPU-minutes for the
# 25 merges and 62 evaluations on the (loaded) 2-core machine, plus about 2.5 for the teacher and the 5
# students the first time (finished runs are skipped on a re-run): a little over the 10-minute target.
#   bash experiments/merge_closefar.sh      # OUT=runs/merge-closefar SEEDS="1 2 3 4 5" EPISODES=20
set -euo pipefail
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/merge-closefar}
SEEDS=${SEEDS:-1 2 3 4 5}
EPISODES=${EPISODES:-20}
FAR=(--set finetune.far_eval_every=5000 --set finetune.far_eval_episodes=20 --set train.eval_every=10000)

once "$OUT/teacher" rlsuite train ppo-closefar --env closefar:chain --set env.start=far --steps 300000 --seed 100
for seed in $SEEDS; do
  once "$OUT/vanilla-s$seed" rlsuite finetune --from "$OUT/teacher" --env closefar:chain --retention none \
       --steps 200000 --seed "$seed" "${FAR[@]}"
done

merge() {  # merge DIR METHOD [GAMMA]: teacher (the reference) + the seed's student, once
  local dir=$1 method=$2 gamma=${3:-}
  [ -d "$dir/checkpoints" ] || rlsuite merge "$OUT/teacher" "$OUT/vanilla-s$seed" --method "$method" \
    ${gamma:+--gamma "$gamma"} --out "$dir" > /dev/null
}
score() {  # score RUN LABEL: the last line of eval.jsonl after a CLOSE and a FAR evaluation
  local run=$1 label=$2 close far
  rlsuite eval "$run" --episodes "$EPISODES" --num-envs "$EPISODES" --set env.start=close > /dev/null
  close=$(tail -1 "$run/eval.jsonl")
  rlsuite eval "$run" --episodes "$EPISODES" --num-envs "$EPISODES" --set env.start=far > /dev/null
  far=$(tail -1 "$run/eval.jsonl")
  python3 -c "import json,sys; c,f=json.loads(sys.argv[1]),json.loads(sys.argv[2]); \
print(json.dumps({'arm': sys.argv[3], 'return': c['mean'], 'far_success': f['success_mean']}))" \
    "$close" "$far" "$label" >> "$OUT/scores.jsonl"
}

rm -f "$OUT/scores.jsonl"
score "$OUT/teacher" teacher
for seed in $SEEDS; do
  score "$OUT/vanilla-s$seed" "vanilla FT"
  for method in average permute; do
    merge "$OUT/merged/$method-s$seed" "$method"
    score "$OUT/merged/$method-s$seed" "merge $method"
  done
  for gamma in 0.1 0.01 0.001; do
    merge "$OUT/merged/cca$gamma-s$seed" cca "$gamma"
    score "$OUT/merged/cca$gamma-s$seed" "merge cca gamma $gamma"
  done
done
python3 - "$OUT/scores.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
arms = list(dict.fromkeys(r["arm"] for r in rows))
print("| arm | runs | final return (CLOSE start), mean [min, max] | FAR success, mean [min, max] |")
print("|---|---|---|---|")
for arm in arms:
    got = [r for r in rows if r["arm"] == arm]
    cell = lambda k: f"{sum(r[k] for r in got) / len(got):.2f} [{min(r[k] for r in got):.2f}, {max(r[k] for r in got):.2f}]"
    print(f"| {arm} | {len(got)} | {cell('return')} | {cell('far_success')} |")
EOF
echo
echo "| merge | mean correlation, first hidden layer | second hidden layer |  (merge.json, mean over seeds)"
python3 - "$OUT" <<'EOF'
import collections, glob, json, re, sys
by = collections.defaultdict(list)
for path in sorted(glob.glob(sys.argv[1] + "/merged/*/merge.json")):
    report = json.load(open(path))
    if report["correlation"]:
        by[re.sub(r"-s\d+$", "", path.split("/")[-2])].append(list(report["correlation"][0].values()))
for arm, rows in by.items():
    print(f"| {arm} | " + " | ".join(f"{sum(r[i] for r in rows) / len(rows):.3f}" for i in range(len(rows[0]))) + " |")
EOF
