#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows) with actionlint, built from its Go module
# at the pinned version (build-tools.sh actionlint). actionlint runs shellcheck on every `run:`
# step when shellcheck is on the PATH: lint-shell.sh installs it (Debian's) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=versions.env
. e2e/tools/versions.env
[ -x "$ACTIONLINT_BIN/actionlint" ] || bash e2e/tools/build-tools.sh actionlint
command -v shellcheck >/dev/null || { echo "lint-workflows: shellcheck is missing (bash e2e/tools/lint-shell.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files '.github/workflows/*.yml' '.github/workflows/*.yaml')
[ ${#files[@]} -gt 0 ] || { echo "lint-workflows: no workflow is tracked by git" >&2; exit 1; }
"$ACTIONLINT_BIN/actionlint" -shellcheck "$(command -v shellcheck)" "${files[@]}"
echo "lint-workflows: ${#files[@]} workflows clean (actionlint $ACTIONLINT_VERSION, shellcheck on run: steps)"
