#!/usr/bin/env bash
# Files a reader can hold: every Rust source file that is not a test file holds at most 450 lines
# before its test module (`#[cfg(test)]` followed by `mod`), unless a line of it says why not:
#   // lint-sizes: <reason>
# Functions are held to 80 lines by clippy (too_many_lines, threshold in clippy.toml).
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=450
bad=0
while IFS= read -r f; do
  case $f in
    */tests/* | */tests.rs | */*_tests.rs | fuzz/*) continue ;;
  esac
  n=$(awk '/^#\[cfg\(test\)\]/ { getline nxt; if (nxt ~ /^(pub(\(crate\))? )?mod /) exit } { n++ } END { print n + 0 }' "$f")
  if [ "$n" -gt "$limit" ] && ! grep -q '// lint-sizes: ' "$f"; then
    echo "lint-sizes: $f holds $n lines outside its tests (at most $limit, or say why in a '// lint-sizes: ' line)" >&2
    bad=1
  fi
done < <(git ls-files '*.rs')
[ "$bad" = 0 ] && echo "lint-sizes: every Rust file at most $limit lines outside its tests"
exit "$bad"
