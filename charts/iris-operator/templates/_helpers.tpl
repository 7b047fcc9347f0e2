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
