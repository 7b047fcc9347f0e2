{{/* The release's full name, used for every object the chart makes. */}}
{{- define "iris-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "iris-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iris-operator.labels" -}}
{{ include "iris-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "iris-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iris-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iris-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "iris-operator.modelServerImage" -}}
{{- printf "%s:%s" .Values.modelServer.image.repository (default .Chart.AppVersion .Values.modelServer.image.tag) -}}
{{- end -}}

{{/*
Comma-separated names of a list of image pull Secrets ([{name: a}, {name: b}] or [a, b]).
*/}}
{{- define "iris-operator.secretNames" -}}
{{- $names := list -}}
{{- range . -}}
{{- if kindIs "map" . -}}
{{- $names = append $names (required "modelServer.imagePullSecrets[] needs a name" .name) -}}
{{- else -}}
{{- $names = append $names . -}}
{{- end -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/*
The operator's rules on namespaced objects: in a ClusterRole without watchNamespaces, in a Role
of each watched namespace with it. Every verb is explained in docs/security.md; keep the two in
step.
*/}}
{{- define "iris-operator.namespacedRules" -}}
# The IrisModels: listed and watched (the controller's cache; never read one by one).
# patch: only to remove the by-hand rollout annotation (serving.iris.dev/rollout) once acted on.
- apiGroups: [serving.iris.dev]
  resources: [irismodels]
  verbs: [list, watch, patch]
- apiGroups: [serving.iris.dev]
  resources: [irismodels/status]
  verbs: [patch]
# The children, written with server-side apply (create: an apply that creates an object is
# authorized as create too); get: a child the cache lacks is looked up before it is created,
# so someone else's object of that name is refused rather than taken over. Stale HPAs and
# PDBs, and a canary Deployment once promoted or rolled back, are deleted (uid precondition).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The replica count of a model autoscaled on its request rate (the operator is its
# autoscaler, as the HorizontalPodAutoscaler is on CPU).
# get: the operator grants it to a scale-to-zero model's activator (RBAC lets one grant
# only what one holds).
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch]
# The activator of a model that scales to zero: a ServiceAccount, and a Role (scale that one
# Deployment, list and watch the pods) bound to it, in the model's namespace. Applied with the
# activator, deleted with it; get: each is read first, and never written or deleted when an
# object of someone else's holds its name (the ownership rule).
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create, patch, delete]
# Services are never deleted by the operator (garbage-collected with their IrisModel).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Referenced model artifacts: watched as metadata (a new artifact rolls the pods), read by GET.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
# Pods and their Warning Events, to tell why a rollout is stuck (crash loops, image pulls,
# sandboxes, mounts, probes): listed only while pods are not ready, a canary runs, or the
# model scales on its request rate (whose pods' /metrics the operator then reads at their
# pod IP). watch: not used by the operator itself, held to grant it to the activator.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
