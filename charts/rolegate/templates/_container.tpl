{{/*
The rolegate container and its volumes, shared by the standalone Deployment and by host charts
that run rolegate as a sidecar. The container's securityContext carries the whole hardening, so
it holds in a host pod whose own securityContext this chart does not control.
*/}}
{{- define "rolegate.container" -}}
{{- $prefix := include "rolegate.portPrefix" . -}}
- name: {{ eq .Values.mode "sidecar" | ternary .Values.sidecar.containerName "rolegate" }}
  image: {{ include "rolegate.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    {{- with .Values.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "rolegate.env" . | nindent 4 }}
  ports:
    {{- if include "rolegate.grpcOverTcp" . }}
    - name: {{ $prefix }}grpc
      containerPort: {{ .Values.grpc.port }}
      protocol: TCP
    {{- end }}
    - name: {{ $prefix }}admin
      containerPort: {{ .Values.admin.port }}
      protocol: TCP
    {{- if .Values.authzen.enabled }}
    - name: {{ $prefix }}authzen
      containerPort: {{ .Values.authzen.port }}
      protocol: TCP
    {{- end }}
  startupProbe:
    {{- include "rolegate.probe" (list . "startup") | nindent 4 }}
  readinessProbe:
    {{- include "rolegate.probe" (list . "readiness") | nindent 4 }}
  livenessProbe:
    {{- include "rolegate.probe" (list . "liveness") | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- /* Never a subPath: the kubelet does not update subPath mounts, and rolegate reloads on
    the ConfigMap's symlink swap. */}}
    - name: rolegate-policies
      mountPath: {{ .Values.policies.mountPath }}
      readOnly: true
    {{- if include "rolegate.usesSocket" . }}
    - name: rolegate-socket
      mountPath: {{ dir .Values.grpc.socketPath }}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: rolegate-tls
      mountPath: {{ .Values.tls.mountPath }}
      readOnly: true
    {{- end }}
    {{- if include "rolegate.callersConfigMap" . }}
    - name: rolegate-callers
      mountPath: {{ .Values.callers.mountPath }}
      readOnly: true
    {{- end }}
    {{- if and .Values.authzen.enabled .Values.authzen.tokenSecret.name }}
    - name: rolegate-authzen-token
      mountPath: {{ .Values.authzen.mountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "rolegate.env" -}}
{{- if not .Values.source }}
- name: ROLEGATE_POLICIES
  value: {{ .Values.policies.mountPath | quote }}
{{- else if eq .Values.source "postgres" }}
- name: ROLEGATE_SOURCE
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.secretName | quote }}
      key: {{ .Values.database.key | quote }}
{{- else }}
- name: ROLEGATE_SOURCE
  value: {{ .Values.source | quote }}
- name: ROLEGATE_SNAPSHOT_SOURCE
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.secretName | quote }}
      key: {{ .Values.database.key | quote }}
{{- end }}
{{- if eq .Values.tenants "on-demand" }}
- name: ROLEGATE_TENANTS
  value: on-demand
- name: ROLEGATE_TENANT_MEMORY
  value: {{ .Values.tenantMemory | quote }}
{{- end }}
- name: ROLEGATE_LISTEN
  value: {{ include "rolegate.listen" . | quote }}
- name: ROLEGATE_ADMIN_LISTEN
  value: {{ include "rolegate.adminListen" . | quote }}
- name: ROLEGATE_LOG
  value: {{ .Values.logLevel | quote }}
- name: ROLEGATE_DECISION_LOG
  value: {{ .Values.decisionLog | quote }}
{{- with .Values.tls }}
{{- if .enabled }}
- name: ROLEGATE_TLS_CERT
  value: {{ printf "%s/tls.crt" .mountPath | quote }}
- name: ROLEGATE_TLS_KEY
  value: {{ printf "%s/tls.key" .mountPath | quote }}
{{- if .clientAuth }}
- name: ROLEGATE_TLS_CLIENT_CA
  value: {{ printf "%s/client-ca.crt" .mountPath | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.authzen.enabled }}
- name: ROLEGATE_AUTHZEN_LISTEN
  value: {{ include "rolegate.authzenListen" . | quote }}
{{- if .Values.authzen.tokenSecret.name }}
- name: ROLEGATE_AUTHZEN_TOKEN_FILE
  value: {{ printf "%s/token" .Values.authzen.mountPath | quote }}
{{- end }}
{{- end }}
{{- if include "rolegate.callersConfigMap" . }}
- name: ROLEGATE_CALLERS
  value: {{ printf "%s/callers.yaml" .Values.callers.mountPath | quote }}
{{- end }}
{{- with .Values.otel }}
{{- if .endpoint }}
{{- /* Declared before OTEL_RESOURCE_ATTRIBUTES, which refers to them. */}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ default (include "rolegate.fullname" $) .serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.node.name=$(NODE_NAME)" }}
{{- range $key, $value := .resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $key $value) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Called with (list scope "startup"|"readiness"|"liveness"). */}}
{{- define "rolegate.probe" -}}
{{- $ := index . 0 }}
{{- $kind := index . 1 }}
{{- if eq (include "rolegate.probeType" $) "grpc" -}}
grpc:
  port: {{ $.Values.grpc.port }}
{{- else -}}
httpGet:
  {{- /* Liveness must not depend on policies: a restart cannot fix a bad document. */}}
  path: {{ eq $kind "liveness" | ternary "/healthz" "/readyz" }}
  port: {{ include "rolegate.portPrefix" $ }}admin
{{- end }}
{{ toYaml (index $.Values.probes $kind) }}
{{- end }}

{{- define "rolegate.volumes" -}}
- name: rolegate-policies
  projected:
    sources:
      {{- if include "rolegate.ownConfigMap" . }}
      - configMap:
          name: {{ include "rolegate.policiesConfigMap" . }}
          {{- with .Values.policies }}
          {{- if or .tenants .templates }}
          {{- /* ConfigMap keys cannot hold a `/`, so templates reach their folder here. */}}
          items:
            {{- range $file, $_ := .tenants }}
            - key: {{ $file }}
              path: {{ $file }}
            {{- end }}
            {{- range $name, $_ := .templates }}
            - key: templates.{{ $name }}.yaml
              path: templates/{{ $name }}.yaml
            {{- end }}
          {{- end }}
          {{- end }}
      {{- end }}
      {{- with .Values.policies.existingConfigMap }}
      {{- if .name }}
      - configMap:
          name: {{ .name }}
          {{- with .items }}
          items:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- end }}
      {{- end }}
{{- if include "rolegate.usesSocket" . }}
- name: rolegate-socket
  emptyDir: {}
{{- end }}
{{- with .Values.tls }}
{{- if .enabled }}
{{- /* Projected, never a subPath: the kubelet then swaps renewed files in place. */}}
- name: rolegate-tls
  projected:
    sources:
      - secret:
          name: {{ include "rolegate.tlsSecret" $ }}
          items:
            - {key: tls.crt, path: tls.crt}
            - {key: tls.key, path: tls.key}
      {{- if .clientAuth }}
      - secret:
          name: {{ default (include "rolegate.tlsSecret" $) .clientCA.secretName }}
          items:
            - {key: {{ .clientCA.key }}, path: client-ca.crt}
      {{- end }}
{{- end }}
{{- end }}
{{- with include "rolegate.callersConfigMap" . }}
- name: rolegate-callers
  configMap:
    name: {{ . }}
    items:
      - {key: callers.yaml, path: callers.yaml}
{{- end }}
{{- if and .Values.authzen.enabled .Values.authzen.tokenSecret.name }}
- name: rolegate-authzen-token
  secret:
    secretName: {{ .Values.authzen.tokenSecret.name }}
    items:
      - {key: {{ .Values.authzen.tokenSecret.key }}, path: token}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
