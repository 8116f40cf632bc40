# Sourced by the Windows stage's scripts: the Wine + Windows CPython environment of fi_run.
# WS: the stage's workspace (Wine prefix, Windows CPython, wheels, venvs); REPO: the fi_run checkout.
export REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export WS=${WS:-${TMPDIR:-/tmp}/fi_run-wine-${USER:-$(id -un)}}
winpath() { printf 'Z:%s' "${1//\//\\}"; }        # /tmp/x -> Z:\tmp\x (Wine maps Z: to /)
export WINEPREFIX=$WS/prefix WINEDEBUG=${WINEDEBUG:--all} WINEARCH=win64 WINEDLLOVERRIDES="mscoree,mshtml="
export WPY=$WS/py/cp313/python.exe            # the base Windows CPython 3.13
export VPY=$WS/venv-test/Scripts/python.exe   # the test venv's python.exe
UV_OLD=$(winpath "$WS/uvold/uv-0.1.27.data/scripts/uv.exe"); export UV_OLD
# Wine 8.0 + CPython 3.13: a std handle inherited from a Unix *regular file* (or /dev/null) makes Python die in
# init_sys_streams ("[WinError 6] Invalid handle"); pipes work. So stdin comes from a pipe and stdout and stderr
# go through cat. The exit status is wine's (pipefail), or 124 when `timeout` stopped it.
wrun() {  # wrun [timeout_s] -- PROGRAM ARGS...   (runs: wine PROGRAM ARGS...)
  local t=120; if [ "$1" != "--" ]; then t=$1; shift; fi; shift
  ( set -o pipefail; { true | timeout -k 5 "$t" wine "$@" 2> >(cat >&2); } | cat )
}
wpy() { wrun 300 -- "$WPY" "$@"; }
