{{/*
Templates for a host chart that runs rolegate inside its own pod. The host depends on this chart,
sets `rolegate.mode: sidecar` and calls each with this chart's scope, `.Subcharts.rolegate`:

  annotations: {{ include "rolegate.sidecar.podAnnotations" .Subcharts.rolegate | nindent 8 }}  (may be empty)
  containers:  {{ include "rolegate.sidecar.container" .Subcharts.rolegate | nindent 8 }}
  volumes:     {{ include "rolegate.sidecar.volumes" .Subcharts.rolegate | nindent 8 }}
  the host container's volumeMounts: {{ include "rolegate.sidecar.socketMount" .Subcharts.rolegate | nindent 12 }}
  its gRPC target: {{ include "rolegate.sidecar.address" .Subcharts.rolegate }}
*/}}

{{/* Standalone mode would also deploy rolegate on its own: almost surely not what was meant. */}}
{{- define "rolegate.sidecar.assertMode" -}}
{{- if ne .Values.mode "sidecar" }}
{{- fail "the rolegate.sidecar.* templates need `rolegate.mode: sidecar` in the host chart's values" }}
{{- end }}
{{- end }}

{{- define "rolegate.sidecar.container" -}}
{{- include "rolegate.sidecar.assertMode" . }}
{{- include "rolegate.container" . }}
{{- end }}

{{- define "rolegate.sidecar.volumes" -}}
{{- include "rolegate.sidecar.assertMode" . }}
{{- include "rolegate.volumes" . }}
{{- end }}

{{/* For the host container, which reaches rolegate's Unix socket through this directory. */}}
{{- define "rolegate.sidecar.socketMount" -}}
{{- include "rolegate.sidecar.assertMode" . -}}
- name: rolegate-socket
  mountPath: {{ dir .Values.grpc.socketPath }}
{{- end }}

{{/* The gRPC target the host application dials: the first listen address, made local. */}}
{{- define "rolegate.sidecar.address" -}}
{{- $first := first (splitList "," (include "rolegate.listen" .)) }}
{{- if hasPrefix "unix:" $first }}
{{- printf "unix://%s" (trimPrefix "unix:" $first) }}
{{- else }}
{{- $first | replace "0.0.0.0:" "127.0.0.1:" | replace "[::]:" "[::1]:" }}
{{- end }}
{{- end }}

{{/* Annotations for the host pod, empty unless policies.restartOnPolicyChange asks for one. */}}
{{- define "rolegate.sidecar.podAnnotations" -}}
{{- if .Values.policies.restartOnPolicyChange -}}
checksum/rolegate-policies: {{ include "rolegate.policyChecksum" . }}
{{- end }}
{{- end }}
