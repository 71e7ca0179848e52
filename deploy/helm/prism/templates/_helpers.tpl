{{/* The name of the chart's objects: the release's name, with "prism" added unless it has it. */}}
{{- define "prism.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels that select the controller's pods. */}}
{{- define "prism.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels. */}}
{{- define "prism.labels" -}}
{{ include "prism.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The name of the HTTP server's objects. */}}
{{- define "prism.server.fullname" -}}
{{- printf "%s-server" (include "prism.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* The labels that select the server's pods: a name of their own, so that the controller's
selector (its Deployment, Service and PodDisruptionBudget) never picks a server's pod. */}}
{{- define "prism.server.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-server
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The server's objects' labels. */}}
{{- define "prism.server.labels" -}}
{{ include "prism.server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The rules `prism rbac` derives from the controller's declarations (files/rbac.yaml). */}}
{{- define "prism.rules" -}}
{{- $rules := .Files.Get "files/rbac.yaml" | fromYaml -}}
{{- if not (hasKey $rules .key) -}}
{{- fail (printf "files/rbac.yaml has no %s: regenerate it with scripts/render-manifests.sh" .key) -}}
{{- end -}}
{{- get $rules .key | toYaml -}}
{{- end -}}
