#!/usr/bin/env bash
# Tests of charts/iris-operator that need no cluster: the chart's CRD is the generated one,
# `helm lint` and `helm template` pass for the default values and for every option turned on,
# and the rendered RBAC stays least-privilege. (The e2e suite installs the chart for real.)
set -euo pipefail
cd "$(dirname "$0")/../.."
. e2e/tools/versions.env
if ! command -v helm >/dev/null; then
  bash e2e/tools/build-tools.sh helm
  export PATH="$HELM_BIN:$PATH"
fi
chart=charts/iris-operator
all=$chart/ci/all-options-values.yaml
fail() { echo "chart-test: FAIL: $*" >&2; exit 1; }
pass() { echo "chart-test: ok: $*"; passed=$((passed + 1)); }
passed=0
# grep that reads all of its input: `helm template | grep -q` can kill helm with SIGPIPE once
# grep has its match, and pipefail then turns the match into a failure.
found() { grep "$@" >/dev/null; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

cmp -s crds/irismodel.yaml $chart/files/irismodel.yaml ||
  fail "$chart/files/irismodel.yaml differs from crds/irismodel.yaml (the generated one): run 'make crds'"
pass "the chart's CRD is crds/irismodel.yaml"

helm lint --strict $chart >/dev/null || { helm lint --strict $chart; fail "helm lint (default values)"; }
pass "helm lint --strict (default values)"
helm lint --strict $chart -f $all >/dev/null || { helm lint --strict $chart -f $all; fail "helm lint (all options)"; }
pass "helm lint --strict (all options)"

helm template t $chart -n iris-system >"$out/default.yaml"
monitoring=(--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PodMonitor
  --api-versions monitoring.coreos.com/v1/PrometheusRule)
helm template t $chart -n iris-system -f $all "${monitoring[@]}" >"$out/all.yaml"
pass "helm template (default values and all options)"

kinds() { grep -E '^kind: ' "$1" | sort | uniq -c | awk '{print $3"="$1}' | tr '\n' ' '; }
[ "$(kinds "$out/default.yaml")" = "ClusterRole=1 ClusterRoleBinding=1 CustomResourceDefinition=1 Deployment=1 Role=1 RoleBinding=1 ServiceAccount=1 ValidatingAdmissionPolicy=1 ValidatingAdmissionPolicyBinding=1 " ] ||
  fail "default values render $(kinds "$out/default.yaml")"
pass "default values render: $(kinds "$out/default.yaml")"
# All options watch two namespaces: a Role and RoleBinding in each, besides the leader election's.
[ "$(kinds "$out/all.yaml")" = "ClusterRole=1 ClusterRoleBinding=1 ConfigMap=1 CustomResourceDefinition=1 Deployment=1 PodMonitor=1 PrometheusRule=1 Role=3 RoleBinding=3 Service=1 ServiceAccount=1 ServiceMonitor=1 ValidatingAdmissionPolicy=1 ValidatingAdmissionPolicyBinding=1 " ] ||
  fail "all options render $(kinds "$out/all.yaml")"
pass "all options render: $(kinds "$out/all.yaml")"
# Pull Secrets: the operator's own on its pod, the model servers' default passed as names.
grep -A1 'name: MODEL_SERVER_IMAGE_PULL_SECRETS' "$out/all.yaml" | found 'value: "regcred,ghcr-token"' ||
  fail "modelServer.imagePullSecrets does not reach the operator as MODEL_SERVER_IMAGE_PULL_SECRETS=regcred,ghcr-token"
grep -q 'MODEL_SERVER_IMAGE_PULL_SECRETS' "$out/default.yaml" &&
  fail "MODEL_SERVER_IMAGE_PULL_SECRETS is set without modelServer.imagePullSecrets"
pass "imagePullSecrets: the operator's on its pod, modelServer.imagePullSecrets as MODEL_SERVER_IMAGE_PULL_SECRETS"
helm template t $chart -f $all | found '^kind: ServiceMonitor' &&
  fail "a ServiceMonitor is rendered although the cluster has no monitoring.coreos.com/v1 API"
pass "no ServiceMonitor without the monitoring.coreos.com/v1 API"
helm template t $chart -f $all | found -E '^kind: (PodMonitor|PrometheusRule)' &&
  fail "a PodMonitor or PrometheusRule is rendered although the cluster has no monitoring.coreos.com/v1 API"
helm template t $chart --api-versions monitoring.coreos.com/v1/PrometheusRule | found '^kind: PrometheusRule' ||
  fail "the PrometheusRule is not on by default where the API exists"
helm template t $chart --api-versions monitoring.coreos.com/v1/PrometheusRule --set metrics.prometheusRule.enabled=false |
  found '^kind: PrometheusRule' && fail "metrics.prometheusRule.enabled=false still renders the PrometheusRule"
pass "PodMonitor and PrometheusRule only with their API; the PrometheusRule on by default, optional"

# The monitoring objects carry the chart's files as they are: alerts.yaml (the plain rules
# file, checked by check-monitoring.sh) and dashboard.json.
doc() { awk -v k="kind: $2" '/^---/{on=0} $0==k{on=1} on' "$1"; }
doc "$out/all.yaml" PrometheusRule | sed -n '/^spec:$/,$p' | sed '1d; s/^  //' >"$out/rules.yaml"
diff -q "$out/rules.yaml" $chart/files/alerts.yaml >/dev/null ||
  { diff "$out/rules.yaml" $chart/files/alerts.yaml | head; fail "the PrometheusRule's spec is not files/alerts.yaml"; }
pass "the PrometheusRule's spec is files/alerts.yaml ($(grep -c -- '- alert: ' "$out/rules.yaml") alerts)"
# IrisModelInputDrift's numbers come from metrics.prometheusRule.inputDrift.
helm template t $chart "${monitoring[@]}" --set metrics.prometheusRule.inputDrift.psiThreshold=0.35 \
  --set metrics.prometheusRule.inputDrift.minRows=1000 --set metrics.prometheusRule.inputDrift.for=3m >"$out/drift.yaml"
for want in 'drift_psi{job="model-server"} > 0.35$' 'drift_window_rows{job="model-server"} >= 1000$' \
  'for: 3m # metrics.prometheusRule.inputDrift.for$'; do
  found -e "$want" "$out/drift.yaml" || fail "metrics.prometheusRule.inputDrift does not reach the rule: no $want"
done
pass "IrisModelInputDrift takes its threshold, minimum rows and for from metrics.prometheusRule.inputDrift"
doc "$out/all.yaml" ConfigMap >"$out/dashboard.yaml"
sed -n '/^  iris-models.json: |-$/,$p' "$out/dashboard.yaml" | sed '1d; s/^    //' >"$out/dashboard.json"
diff -q "$out/dashboard.json" $chart/files/dashboard.json >/dev/null ||
  { diff "$out/dashboard.json" $chart/files/dashboard.json | head; fail "the dashboard ConfigMap does not hold files/dashboard.json"; }
grep -q 'grafana_dashboard: "1"' "$out/dashboard.yaml" || fail "the dashboard ConfigMap lacks grafana_dashboard: \"1\""
grep -q 'namespace: monitoring' "$out/dashboard.yaml" || fail "metrics.dashboard.namespace is not used"
grep -q '^kind: ConfigMap' "$out/default.yaml" && fail "the dashboard is rendered by default"
pass "the dashboard ConfigMap holds files/dashboard.json, labelled for Grafana's sidecar, off by default"
doc "$out/all.yaml" PodMonitor | found 'port: http$' || fail "the PodMonitor does not scrape the port named http"
doc "$out/all.yaml" PodMonitor | found 'app.kubernetes.io/name: model-server' || fail "the PodMonitor does not select model-server pods"
doc "$out/all.yaml" PodMonitor | found -- '- team-a' || fail "the PodMonitor does not keep to watchNamespaces"
doc "$out/all.yaml" ServiceMonitor | found 'honorLabels: true' || fail "the ServiceMonitor does not honor the model series' namespace label"
pass "PodMonitor selects model-server pods on port http in the watched namespaces; ServiceMonitor honors labels"
for f in "$out/default.yaml" "$out/all.yaml"; do
  doc "$f" Deployment | found 'prometheus.io/scrape: "true"' || fail "the operator's pods lack prometheus.io/scrape in $(basename "$f")"
done
doc "$out/all.yaml" Deployment | found 'prometheus.io/port: "9090"' || fail "prometheus.io/port is not metrics.port"
doc "$out/all.yaml" Deployment | found 'example.com/team: ml' || fail "podAnnotations are lost next to the scrape annotations"
helm template t $chart --set metrics.scrapeAnnotations=false | found 'prometheus.io/' &&
  fail "metrics.scrapeAnnotations=false still annotates the pods"
pass "the operator's pods carry prometheus.io/scrape, port and path (optional), next to podAnnotations"

grep -q 'helm.sh/resource-policy: keep' "$out/default.yaml" || fail "the CRD is not kept on helm uninstall"
rules() { grep -c 'rule: ' "$1"; }
[ "$(rules "$out/default.yaml")" = "$(rules crds/irismodel.yaml)" ] ||
  fail "the rendered CRD carries $(rules "$out/default.yaml") CEL rules, crds/irismodel.yaml $(rules crds/irismodel.yaml)"
helm template t $chart --set crds.install=false | found '^kind: CustomResourceDefinition' &&
  fail "crds.install=false still renders the CRD"
pass "the CRD is rendered with all $(rules crds/irismodel.yaml) CEL rules, kept on uninstall, and optional"

grep -q 'value: "team-a,team-b"' "$out/all.yaml" || fail "watchNamespaces is not passed to WATCH_NAMESPACES"
grep -q 'registry.example.com/iris/model-server:9.9.9' "$out/all.yaml" || fail "the model-server image is not passed"
grep -q 'image: "iris-operator/operator:0.1.0"' "$out/default.yaml" || fail "the default operator image is not iris-operator/operator:<appVersion>"
pass "values reach the operator's environment"

# Least privilege: no Secrets, no wildcards anywhere in the RBAC.
for f in "$out/default.yaml" "$out/all.yaml"; do
  grep -nE '^\s*-?\s*(resources|verbs|apiGroups): .*\*' "$f" && fail "a wildcard in the RBAC of $(basename "$f")"
  grep -nE '^\s*resources: .*secrets' "$f" && fail "Secrets appear in $(basename "$f")"
done
pass "RBAC has no wildcard and no Secrets"

# Least privilege with watchNamespaces: the operator's rules become a Role in each watched
# namespace, and the only ClusterRole left reads the IrisModel CRD (the one cluster-scoped read).
# docs() prints each rendered object of a kind as one line-joined record, for grep.
docs() { awk -v k="kind: $2" 'BEGIN{RS="\n---\n"} index($0, "\n" k "\n") || index($0, k "\n") == 1 {gsub("\n", "\\n"); print}' "$1"; }
named() { grep -F "\\n  name: $1\\n" | grep -F "${2:+\\n  namespace: $2\\n}"; }
# The rules of one rendered object: its apiGroups/resources/verbs lines, comments dropped.
rules_of() { sed 's/\\n/\n/g' | sed -n '/^rules:$/,$p' | grep -E '^ *-? *(apiGroups|resources|resourceNames|verbs):' | sed 's/^ *-* *//'; }
docs "$out/default.yaml" ClusterRole | rules_of >"$out/cluster-rules"
grep -qx 'resources: \[irismodels\]' "$out/cluster-rules" || fail "the default ClusterRole lacks the operator's rules"
grep -c '^resources:' "$out/cluster-rules" | found -x 14 || fail "the default ClusterRole has $(grep -c '^resources:' "$out/cluster-rules") rules, not 14"
tail -n +5 "$out/cluster-rules" >"$out/operator-rules" # without the CRD rule (4 lines)
head -4 "$out/cluster-rules" | found 'customresourcedefinitions' || fail "the default ClusterRole does not start with the CRD rule"
docs "$out/default.yaml" Role | found 'leader-election' || fail "the leader-election Role is missing"
[ "$(docs "$out/default.yaml" Role | wc -l)" = 1 ] || fail "a Role besides the leader election's without watchNamespaces"
docs "$out/all.yaml" ClusterRole | rules_of >"$out/ns-cluster-rules"
printf '%s\n' 'apiGroups: [apiextensions.k8s.io]' 'resources: [customresourcedefinitions]' \
  'resourceNames: [irismodels.serving.iris.dev]' 'verbs: [get]' | diff - "$out/ns-cluster-rules" >/dev/null ||
  { cat "$out/ns-cluster-rules"; fail "with watchNamespaces the ClusterRole holds more than get on the IrisModel CRD"; }
for ns in team-a team-b; do
  docs "$out/all.yaml" Role | named t-iris-operator $ns | rules_of | diff "$out/operator-rules" - >/dev/null ||
    fail "no Role t-iris-operator with the operator's rules in namespace $ns"
  docs "$out/all.yaml" RoleBinding | named t-iris-operator $ns |
    grep -F 'kind: Role\n  name: t-iris-operator\n' | found -F 'name: iris-operator-custom\n    namespace: iris-system' ||
    fail "no RoleBinding of Role t-iris-operator to the operator's ServiceAccount in namespace $ns"
done
helm template t $chart -n iris-system --set 'watchNamespaces={team-a,team-a,team-b}' | grep -c '^kind: Role$' | found -x 3 ||
  fail "a namespace listed twice in watchNamespaces does not get one Role"
pass "watchNamespaces: a Role and RoleBinding per namespace, the ClusterRole only reads the CRD; without it, one ClusterRole"
grep -qx 'verbs: \[list, watch\]' <(grep -A1 -x 'resources: \[pods\]' "$out/operator-rules") ||
  fail "pods are not list, watch (the operator grants the activator watch on pods)"
grep -A1 -x 'resources: \[irismodels\]' "$out/operator-rules" | found -x 'verbs: \[list, watch, patch\]' ||
  fail "irismodels are not exactly list, watch, patch"
# Every rule is in docs/security.md's table (resource and verbs).
# (the second column of its tables: resource names, comma-separated, maybe with a remark in parentheses)
awk -F'|' '/^\| /{print $3}' docs/security.md | sed 's/([^)]*)//g' | tr ',' '\n' | tr -d ' ' | sort -u >"$out/documented"
while read -r res; do
  grep -qx "$res" "$out/documented" || fail "docs/security.md does not explain the rule on $res"
done < <(sed -n 's/^resources: \[\(.*\)\]$/\1/p' "$out/cluster-rules" | tr -d ' ' | tr ',' '\n')
pass "the operator's verbs: pods list/watch, irismodels list/watch/patch; every resource is in docs/security.md"

# The admission policy: on by default, scoped to the watched namespaces, the values as CEL literals,
# every refusal naming its rule.
vap() { docs "$1" ValidatingAdmissionPolicy | head -1 | sed 's/\\n/\n/g'; }
binding() { docs "$1" ValidatingAdmissionPolicyBinding | sed 's/\\n/\n/g'; }
vap "$out/default.yaml" >"$out/vap-default.yaml"
grep -q '\["iris-operator/model-server:","iris-operator/model-server@"\]' "$out/vap-default.yaml" ||
  fail "the default allowed images are not the chart's model-server repository"
grep -q '\["ClusterIP","NodePort"\]' "$out/vap-default.yaml" || fail "the default allowed Service types are not ClusterIP, NodePort"
for rule in policy.allowedImagePrefixes policy.allowedServiceTypes policy.customImageSecrets; do
  grep -q "($rule: " "$out/vap-default.yaml" || fail "no message names $rule"
done
grep -q 'request.userInfo.username != "system:serviceaccount:iris-system:t-iris-operator"' "$out/vap-default.yaml" ||
  fail "the operator's own writes are not exempt from the policy"
binding "$out/default.yaml" | found 'matchResources' && fail "without watchNamespaces the binding is scoped"
binding "$out/default.yaml" | found 'validationActions: \["Deny"\]' || fail "the binding does not deny by default"
binding "$out/all.yaml" | found 'values: \["team-a","team-b"\]' || fail "the binding is not scoped to watchNamespaces"
vap "$out/all.yaml" | found '"registry.example.com/iris/model-server:","registry.example.com/iris/model-server@","registry.example.com/ml/"' ||
  fail "policy.allowedImagePrefixes does not add to modelServer.image.repository"
vap "$out/all.yaml" | found 'policy.customImageSecrets: false' && fail "policy.customImageSecrets=true still renders its rule"
helm template t $chart --set policy.enabled=false | found -E '^kind: ValidatingAdmissionPolicy' &&
  fail "policy.enabled=false still renders the policy"
for bad in 'policy.validationActions={Deny,Warn}' 'policy.validationActions={Block}' 'policy.allowedServiceTypes={ExternalName}'; do
  helm template t $chart --set "$bad" >/dev/null 2>"$out/err" && fail "$bad was accepted"
  grep -q 'policy\.' "$out/err" || fail "unclear error for $bad: $(cat "$out/err")"
done
pass "admission policy: on by default, off with policy.enabled=false, scoped to watchNamespaces, messages name the rules"
# The policy through the API server's own CEL code (e2e/tools/policy-check, built once into the
# tool cache): type-checked against the CRD's schema, compiled with the CEL libraries of the
# oldest Kubernetes the chart supports (Chart.yaml's kubeVersion), and deciding test cases.
min_k8s=$(sed -n 's/^kubeVersion: ">=\([0-9]*\.[0-9]*\).*/\1/p' $chart/Chart.yaml)
if command -v go >/dev/null; then
  src=e2e/tools/policy-check
  check=${IRIS_CACHE:-$HOME/.cache/iris-operator}/policy-check-$(cat $src/go.mod $src/go.sum $src/main.go | sha256sum | cut -c1-12)/policy-check
  if [ ! -x "$check" ]; then
    echo "chart-test: building $src (once; about 5 min cold)"
    mkdir -p "$(dirname "$check")"
    (cd $src && go build -trimpath -o "$check.tmp" .) || fail "cannot build $src"
    mv "$check.tmp" "$check"
  fi
  for values in default all-options; do
    args=(); [ $values = all-options ] && args=(-f "$all")
    helm template t $chart -n iris-system "${args[@]}" --show-only templates/admission-policy.yaml |
      awk 'BEGIN{RS="\n---\n"} /\nkind: ValidatingAdmissionPolicy\n/' >"$out/policy-$values.yaml"
    cases=e2e/tools/policy-cases.json; [ $values = all-options ] && cases=e2e/tools/policy-cases-all-options.json
    "$check" "$out/policy-$values.yaml" crds/irismodel.yaml $cases "$min_k8s" >"$out/check.log" 2>&1 ||
      { cat "$out/check.log"; fail "the admission policy (values: $values) with the API server's CEL"; }
  done
  pass "the policy type-checks against the IrisModel schema, compiles with Kubernetes $min_k8s's CEL, decides $(cat e2e/tools/policy-cases*.json | grep -c "\"allow\"") cases"
else
  echo "chart-test: skipped: the policy's CEL check (needs go)"
fi

if helm template t $chart --set replicaCount=2 --set leaderElection.enabled=false >/dev/null 2>"$out/err"; then
  fail "replicaCount=2 without leader election was accepted"
fi
grep -q 'needs leaderElection.enabled=true' "$out/err" || fail "unclear error for replicas without leader election: $(cat "$out/err")"
pass "replicaCount=2 without leader election is refused with a message"

echo "$passed passed, 0 failed"
