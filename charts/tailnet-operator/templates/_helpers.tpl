{{/* Chart name, overridable. */}}
{{- define "tailnet-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name. */}}
{{- define "tailnet-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "tailnet-operator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tailnet-operator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tailnet-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tailnet-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tailnet-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tailnet-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tailnet-operator.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Leader election: explicit, or on exactly when there is more than one replica. */}}
{{- define "tailnet-operator.leaderElection" -}}
{{- $mode := toString .Values.operator.leaderElection -}}
{{- if eq $mode "auto" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{- define "tailnet-operator.mcpSecretName" -}}
{{- default (printf "%s-mcp-token" (include "tailnet-operator.fullname" .)) .Values.mcp.auth.existingSecret -}}
{{- end -}}
