# Sourced by the experiment scripts: `once DIR COMMAND...` starts a run in DIR, or resumes it when DIR
# already holds checkpoints (`rlsuite train --resume`, under the same prefix such as `nice -n 19`; a
# finished run is a no-op), so re-running a script skips finished runs and continues interrupted ones.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin:$PATH"
once() {
  local dir=$1; shift
  local prefix=()  # what runs before `rlsuite` (e.g. `nice -n 19`): a resume keeps it
  while [ $# -gt 0 ] && [ "$1" != rlsuite ]; do prefix+=("$1"); shift; done
  if [ -d "$dir/checkpoints" ] && [ -n "$(ls -A "$dir/checkpoints")" ]; then
    "${prefix[@]}" rlsuite train --resume "$dir" --no-progress > /dev/null
  elif [ -f "$dir/config.toml" ] && rlsuite train --resume "$dir" --no-progress > /dev/null 2>&1; then
    :  # a record (experiments/records.py): finished, its checkpoints removed; nothing to do
  else
    rm -rf "$dir"; "${prefix[@]}" "$@" --run-dir "$dir" --no-progress > /dev/null
  fi
  echo "done: $dir"
}

# The records of long studies (experiments/records.py): finished runs without their checkpoints, and
# the MinAtar teachers as exported weights (0.5 MB each), kept in the repository so that a study
# continues on a new machine. `teacher_of GAME` is the teacher that collects GAME's datasets: the
# kept export when there is one, else the run experiments/dt_minatar_teachers.sh trains.
RECORDS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/records"
teacher_of() {
  local kept="$RECORDS_ROOT/dt-minatar-teachers/teacher-$1.pt"
  if [ -f "$kept" ]; then echo "$kept"; else echo "runs/dt-minatar/teacher-$1"; fi
}
records() {  # records save|restore FROM TO
  python "$RECORDS_ROOT/../records.py" "$@"
}
