{{/*
Names and labels shared by every template of the shorthop chart.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "shorthop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: fullnameOverride, else <release>-<name>, or just the release
name when it already contains the chart name. Kept to 63 characters (DNS label).
*/}}
{{- define "shorthop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "shorthop.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, as the helm.sh/chart label wants it. */}}
{{- define "shorthop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods; never change them after a release exists. */}}
{{- define "shorthop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shorthop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every resource. */}}
{{- define "shorthop.labels" -}}
helm.sh/chart: {{ include "shorthop.chart" . }}
{{ include "shorthop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shorthop
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "shorthop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "shorthop.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image reference: repository@digest when a digest pins it, else
repository:tag (the tag defaults to the chart's appVersion). */}}
{{- define "shorthop.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Where the container reads its configuration (the ConfigMap key config.yaml). */}}
{{- define "shorthop.configDir" -}}/etc/shorthop{{- end -}}

{{/*
Cross-value checks JSON schema cannot express; included by the Deployment so that every render
fails early with a message naming the values.
*/}}
{{- define "shorthop.validate" -}}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) -}}
{{- fail (printf "metrics.port and health.port must differ (both are %d)" (int .Values.metrics.port)) -}}
{{- end -}}
{{- end -}}

{{/*
The node agent (nodeAgent.enabled). Its pods carry their own app.kubernetes.io/name, so that the
operator Deployment's selector (name + instance, fixed since the first release) never matches them.
*/}}
{{- define "shorthop.agentName" -}}
{{- printf "%s-node-agent" (include "shorthop.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "shorthop.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-node-agent" (include "shorthop.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "shorthop.agentLabels" -}}
helm.sh/chart: {{ include "shorthop.chart" . }}
{{ include "shorthop.agentSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shorthop
{{- end -}}

{{/* The ServiceAccount the node agent runs as. */}}
{{- define "shorthop.agentServiceAccountName" -}}
{{- default (include "shorthop.agentName" .) .Values.nodeAgent.serviceAccount.name -}}
{{- end -}}

{{/* The node agent's image: its own values, else the operator's (one image holds both); a
digest pins it (the operator's digest applies when the agent names no image of its own). */}}
{{- define "shorthop.agentImage" -}}
{{- $own := or .Values.nodeAgent.image.repository .Values.nodeAgent.image.tag -}}
{{- $repository := .Values.nodeAgent.image.repository | default .Values.image.repository -}}
{{- $digest := .Values.nodeAgent.image.digest | default (ternary "" .Values.image.digest (not (empty $own))) -}}
{{- if $digest -}}
{{- printf "%s@%s" $repository $digest -}}
{{- else -}}
{{- $tag := .Values.nodeAgent.image.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Node annotations the agent writes: the only thing its admission policy lets it change. */}}
{{- define "shorthop.agentAnnotationKeys" -}}
["shorthop.io/nvidia-smi-topo", "shorthop.io/gpu-topology"]
{{- end -}}
