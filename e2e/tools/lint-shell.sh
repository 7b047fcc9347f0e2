#!/usr/bin/env bash
# Lints with shellcheck every shell script in the repository: the *.sh files and the extensionless
# files whose first line is a shell shebang (.ci/run). Settings in .shellcheckrc (follow sourced
# files). shellcheck comes from Debian's package, installed here when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v shellcheck >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "lint-shell: shellcheck is missing: apt-get install shellcheck" >&2; exit 1; }
  echo "lint-shell: installing Debian's shellcheck" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq shellcheck >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; }
fi
files=()
while IFS= read -r f; do
  [ -f "$f" ] || continue
  case $f in
    *.sh) files+=("$f") ;;
    *.*) ;;
    *) head -1 "$f" | grep -qE '^#!.*\b(ba)?sh\b' && files+=("$f") ;;
  esac
done < <(git ls-files)
shellcheck "${files[@]}"
echo "lint-shell: ${#files[@]} scripts clean ($(shellcheck --version | sed -n 's/^version: //p'))"
