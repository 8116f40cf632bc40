#!/bin/sh
# Contention simulator for the seed-like build: sim.sh MODE RESOURCE_DIR SECONDS
# MODE is exclusive or shared. The step registers itself in RESOURCE_DIR/holders, sleeps SECONDS, and fails
# with uv#2767's message if it ever sees a conflicting holder (exclusive: anyone else; shared: an exclusive
# holder). Registering before looking means two overlapping steps cannot both miss each other.
mode=$1 dir=$2 seconds=$3
mkdir -p "$dir/holders"
me="$dir/holders/$mode-$$"
: > "$me"
check() {
  for other in "$dir"/holders/*; do
    [ -e "$other" ] || continue
    [ "$other" = "$me" ] && continue
    case "$mode:${other##*/}" in
      exclusive:* | shared:exclusive-*)
        echo "error: Could not try lock $dir/.lock: The process cannot access the file because another process has locked a portion of the file. (os error 33)" >&2
        echo "conflict $mode $$ ${other##*/}" >> "$dir/conflicts"
        rm -f "$me"
        exit 2 ;;
    esac
  done
}
check
sleep "$seconds"
check
rm -f "$me"
