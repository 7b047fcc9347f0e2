#!/usr/bin/env bash
# Creates (once) a Python virtual environment with the pinned Python clients and prints its path.
# The venv lives outside the repo, keyed by a hash of the requirements, the lock and the Python
# version: ${IRIS_CACHE:-~/.cache/iris-operator}/<prefix>-<hash>. A cached one is reused as is
# (it carries a .complete marker written last, so an interrupted install is redone).
#
#   e2e/clients/setup.sh                 # the client kit (requirements.txt + requirements.lock)
#   e2e/clients/setup.sh --relock        # resolve requirements.txt anew, rewrite requirements.lock
#   e2e/clients/setup.sh --requirements bench/mlserver/requirements.txt --prefix mlserver
#                                        # another pinned set (the benchmark's MLServer peer)
#   PYTHON=python3.11 e2e/clients/setup.sh
#
# With a lock beside the requirements file (same name, .lock) the venv gets exactly the locked
# versions (`pip install --no-deps -r LOCK`, then `pip check`); without one, pip resolves the file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req=$here/requirements.txt
prefix=pyclients
relock=0
while [ $# -gt 0 ]; do
  case $1 in
    --requirements) req=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --relock) relock=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$req" ] || { echo "setup.sh: no requirements file $req" >&2; exit 1; }
lock=${req%.txt}.lock
python=${PYTHON:-python3}
cache=${IRIS_CACHE:-$HOME/.cache/iris-operator}
step() { printf '[setup] %s\n' "$*" >&2; }

pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if [ "$relock" = 1 ]; then
  venv=$cache/$prefix-relock
  rm -rf "$venv"
else
  hash=$( { cat "$req"; [ -f "$lock" ] && cat "$lock"; echo "$pyver"; } | sha256sum | cut -c1-12)
  venv=$cache/$prefix-$hash
fi
if [ -f "$venv/.complete" ]; then
  echo "$venv"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.$prefix.lock"
if ! flock -n 9; then
  step "another setup.sh is installing $prefix; waiting for it"
  timeout 900 flock 9
fi
if [ -f "$venv/.complete" ]; then echo "$venv"; exit 0; fi

step "creating $venv (Python $pyver)"
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
export PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-60}
if [ "$relock" = 0 ] && [ -f "$lock" ]; then
  step "installing the locked versions from $(basename "$lock") (--no-deps)"
  timeout 1200 "${pip[@]}" install --no-deps -r "$lock" >&2
  "${pip[@]}" check >&2 || step "warning: pip check reports inconsistencies (see above)"
else
  step "resolving $(basename "$req")"
  timeout 1200 "${pip[@]}" install -r "$req" >&2
fi
if [ "$relock" = 1 ]; then
  {
    echo "# Resolved from $(basename "$req") on Python $pyver by \`setup.sh --relock\`; do not edit."
    "${pip[@]}" freeze --all --exclude pip
  } >"$lock"
  step "wrote $lock"
  rm -rf "$venv"
  # Build the real, hash-keyed venv from the new lock.
  exec "$0" --requirements "$req" --prefix "$prefix"
fi
touch "$venv/.complete"
echo "$venv"
