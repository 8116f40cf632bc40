#!/usr/bin/env bash
# The seed (uv#2767) as a test: N concurrent `uv 0.1.27 pip install -e` into ONE venv under Windows
# ninja.exe -j8, three ways: unwrapped, `fi_run --lock venv`, and fi_run with its default retries only.
# Fails if, with fi_run, any step ends on os error 33 (ERROR_LOCK_VIOLATION: uv gave up on the venv's .lock).
# Unwrapped failures are reported, not required: the race is a race.
# Under Wine 8.0 every uv 0.1.27 install then ends in os error 50 (its cache junctions; Wine has no reparse
# points), after the part that takes the venv's lock: that error is counted and ignored.
#   .ci/windows/seed.sh [RUNS=1] [N=8]        (after setup.sh)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
RUNS=${1:-1}; N=${2:-8}
SEED=$WS/seed
rm -rf "$SEED" && mkdir -p "$SEED/logs"
python3 "$HERE/seed/make_seed.py" "$SEED" "$N" || exit 1
cd "$SEED" || exit 1
export UV_CACHE_DIR; UV_CACHE_DIR=$(winpath "$SEED/cache")
export VIRTUAL_ENV; VIRTUAL_ENV=$(winpath "$SEED/venv")
NINJA=$WS/venv-test/Scripts/ninja.exe
bad=0
for variant in unwrapped locked retry; do
  for run in $(seq "$RUNS"); do
    log=logs/$variant-$run.txt
    # Wine's process start sometimes fails in ninja.exe itself ("ninja: fatal: CreateProcess: Internal
    # error", no step started): such a run is run again, once, as run.sh does for the suite; a real failure
    # fails twice.
    for attempt in 1 2; do
      rm -rf venv cache "out-$variant"
      wrun 120 -- "$UV_OLD" venv -q --python "$(winpath "$WPY")" venv >/dev/null 2>&1
      t0=$(date +%s%N)
      wrun 580 -- "$NINJA" -f "$variant.ninja" -j8 -k 0 > "$log" 2>&1
      took=$(( ($(date +%s%N) - t0) / 1000000 ))
      grep -q 'ninja: fatal: CreateProcess: Internal error' "$log" || break
      [ "$attempt" = 1 ] && echo "SEED $variant run $run: ninja.exe could not start a process (Wine); run again, once"
    done
    failed=$(grep -c '^FAILED' "$log")
    e33=$(grep -c '^error: .*(os error 33)' "$log")
    e50=$(grep -c '(os error 50)' "$log")
    retries=$(grep -c 'fi_run: lock contention' "$log")
    started=$(grep -c 'UV pkg' "$log")
    printf 'SEED %-9s run %d: %d/%d steps started, %d failed; final os error 33: %d, os error 50 (Wine): %d; fi_run retries: %d; %d ms\n' \
      "$variant" "$run" "$started" "$N" "$failed" "$e33" "$e50" "$retries" "$took"
    if [ "$variant" != unwrapped ] && [ "$e33" != 0 ]; then
      echo "SEED FAIL: with fi_run ($variant), $e33 step(s) died of os error 33; log: $SEED/$log"; bad=1
    fi
    if [ "$started" != "$N" ]; then
      echo "SEED FAIL: $variant started $started of $N steps; log: $SEED/$log"; bad=1
    fi
  done
done
exit $bad
