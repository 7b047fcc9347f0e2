#!/usr/bin/env bash
# Checks the monitoring files of the chart (charts/iris-operator/files), no cluster needed:
#   - alerts.yaml passes `promtool check rules`, and alerts_test.yaml (`promtool test rules`:
#     every alert fires, and stays quiet, on the right series);
#   - every query of dashboard.json parses (as the exprs of a generated rules file);
#   - alerts, their tests and the dashboard name only metrics listed in metrics.txt, which unit
#     tests of both crates compare with the binaries' real /metrics output.
# promtool is built from the Prometheus Go module on first use (build-tools.sh promtool).
set -euo pipefail
cd "$(dirname "$0")/../.."
. e2e/tools/versions.env
files=charts/iris-operator/files
if [ ! -x "$PROMTOOL_BIN/promtool" ]; then
  bash e2e/tools/build-tools.sh promtool
fi
promtool=$PROMTOOL_BIN/promtool
fail() { echo "check-monitoring: FAIL: $*" >&2; exit 1; }
pass() { echo "check-monitoring: ok: $*"; passed=$((passed + 1)); }
passed=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$promtool" check rules "$files/alerts.yaml" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "promtool check rules alerts.yaml"; }
pass "promtool check rules alerts.yaml: $(grep -o '[0-9]* rules found' "$tmp/out")"
(cd "$files" && "$promtool" test rules alerts_test.yaml) >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "promtool test rules alerts_test.yaml"; }
pass "promtool test rules alerts_test.yaml: $(grep -c 'alertname: ' "$files/alerts_test.yaml") cases"
while IFS= read -r alert; do
  grep -q "alertname: $alert\b" "$files/alerts_test.yaml" || fail "alert $alert has no test in alerts_test.yaml"
done < <(sed -n 's/^ *- alert: //p' "$files/alerts.yaml")
pass "every alert has a test"

# The dashboard's queries (one "expr" a line, JSON-escaped), with Grafana's interval variables
# replaced, as the exprs of recording rules: promtool parses each.
# shellcheck disable=SC2016 # the $ are Grafana's, not the shell's
grep -oE '"expr": "([^"\\]|\\.)*"' "$files/dashboard.json" |
  sed -E 's/^"expr": "//; s/"$//; s/\\"/"/g; s/\\\\/\\/g; s/\$__rate_interval|\$__interval/5m/g' >"$tmp/exprs"
[ -s "$tmp/exprs" ] || fail "no query found in dashboard.json"
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  n=0
  while IFS= read -r expr; do
    n=$((n + 1))
    echo "      - record: dashboard:query_$n"
    printf "        expr: '%s'\n" "${expr//\'/\'\'}"
  done <"$tmp/exprs"
} >"$tmp/dashboard-rules.yaml"
"$promtool" check rules "$tmp/dashboard-rules.yaml" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "a dashboard query does not parse"; }
pass "the $(wc -l <"$tmp/exprs") dashboard queries parse"

# Metric names: every iris_operator_*/model_server_* name used is one the binaries export.
grep -v '^#' "$files/metrics.txt" | sort -u >"$tmp/known"
for f in alerts.yaml alerts_test.yaml dashboard.json; do
  grep -ohE '\b(iris_operator|model_server)_[a-zA-Z0-9_]+' "$files/$f" | sort -u >"$tmp/used"
  unknown=$(comm -23 "$tmp/used" "$tmp/known")
  [ -z "$unknown" ] || fail "$f names metrics no binary exports (see metrics.txt): $unknown"
  pass "$f names $(wc -l <"$tmp/used") metrics, all exported"
done
echo "$passed passed, 0 failed"
