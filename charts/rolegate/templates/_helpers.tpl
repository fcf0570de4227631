{{/*
Every helper takes the rolegate chart's scope: `.` inside this chart, `.Subcharts.rolegate` in a
host chart, so both render the same names and labels.
*/}}

{{- define "rolegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rolegate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rolegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rolegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rolegate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rolegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: authorization
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rolegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rolegate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rolegate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "rolegate.policiesConfigMap" -}}
{{- printf "%s-policies" (include "rolegate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Non-empty when this chart renders its own policy ConfigMap. */}}
{{- define "rolegate.ownConfigMap" -}}
{{- with .Values.policies }}
{{- if or .tenants .templates (not .existingConfigMap.name) }}true{{ end }}
{{- end }}
{{- end }}

{{/* A policy document given as YAML text is kept verbatim, comments included. */}}
{{- define "rolegate.document" -}}
{{- if kindIs "string" . }}
{{- trimSuffix "\n" . }}
{{- else }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Lets a pod roll on policy changes when restartOnPolicyChange asks for it. */}}
{{- define "rolegate.policyChecksum" -}}
{{- with .Values.policies }}
{{- toJson (list .tenants .templates .existingConfigMap) | sha256sum }}
{{- end }}
{{- end }}

{{- define "rolegate.listen" -}}
{{- if .Values.grpc.listen }}
{{- join "," .Values.grpc.listen }}
{{- else if eq .Values.mode "sidecar" }}
{{- printf "unix:%s" .Values.grpc.socketPath }}
{{- else }}
{{- printf "0.0.0.0:%v" .Values.grpc.port }}
{{- end }}
{{- end }}

{{- define "rolegate.authzenListen" -}}
{{- printf "%s:%v" (eq .Values.mode "sidecar" | ternary "127.0.0.1" "0.0.0.0") .Values.authzen.port }}
{{- end }}

{{- define "rolegate.adminListen" -}}
{{- default (printf "0.0.0.0:%v" .Values.admin.port) .Values.admin.listen }}
{{- end }}

{{/* Non-empty when the gRPC server has a TCP listener, so its port is worth declaring. */}}
{{- define "rolegate.grpcOverTcp" -}}
{{- range splitList "," (include "rolegate.listen" .) }}
{{- if not (hasPrefix "unix:" .) }}true{{ end }}
{{- end }}
{{- end }}

{{/* Non-empty when the pod needs the socket directory. */}}
{{- define "rolegate.usesSocket" -}}
{{- if or (eq .Values.mode "sidecar") (contains "unix:" (include "rolegate.listen" .)) }}true{{ end }}
{{- end }}

{{- define "rolegate.probeType" -}}
{{- if ne .Values.probes.type "auto" }}
{{- .Values.probes.type }}
{{- else if or (eq .Values.mode "sidecar") .Values.tls.enabled }}http
{{- else }}grpc
{{- end }}
{{- end }}

{{/* The Secret with the server's certificate and key. */}}
{{- define "rolegate.tlsSecret" -}}
{{- default (printf "%s-tls" (include "rolegate.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The ConfigMap with the callers file, if there is one. */}}
{{- define "rolegate.callersConfigMap" -}}
{{- if .Values.callers.existingConfigMap }}
{{- .Values.callers.existingConfigMap }}
{{- else if .Values.callers.entries }}
{{- printf "%s-callers" (include "rolegate.fullname" .) }}
{{- end }}
{{- end }}

{{/* Port names are unique per pod, so in a host's pod they carry the product's name. */}}
{{- define "rolegate.portPrefix" -}}
{{- if eq .Values.mode "sidecar" }}rolegate-{{ end }}
{{- end }}
