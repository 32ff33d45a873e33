# Sourced by the experiment scripts: `once DIR COMMAND...` starts a run in DIR, or resumes it when DIR
# already holds checkpoints (`rlsuite train --resume`; a finished run is a no-op), so re-running a
# script skips finished runs and continues interrupted ones.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin:$PATH"
once() {
  local dir=$1; shift
  if [ -d "$dir/checkpoints" ] && [ -n "$(ls -A "$dir/checkpoints")" ]; then
    rlsuite train --resume "$dir" --no-progress > /dev/null
  else
    rm -rf "$dir"; "$@" --run-dir "$dir" --no-progress > /dev/null
  fi
  echo "done: $dir"
}
