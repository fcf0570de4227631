{{/* Checks across values that values.schema.json cannot express. */}}
{{- define "rolegate.validate" -}}
{{- if and .Values.source (not .Values.database.secretName) }}
{{- fail "database.secretName: name the Secret holding the database DSN (needed with `source`)" }}
{{- end }}
{{- if and (eq .Values.tenants "on-demand") (not .Values.source) }}
{{- fail "tenants `on-demand` needs `source` (`postgres` or `nats://…`): a policy directory is always held whole" }}
{{- end }}
{{- if and .Values.publish.enabled (not (or .Values.publish.nats (hasPrefix "nats://" .Values.source) (hasPrefix "tls://" .Values.source))) }}
{{- fail "publish.nats: name the NATS servers (or set `source: nats://…`)" }}
{{- end }}
{{- if and .Values.publish.enabled (not (or .Values.publish.database.secretName .Values.database.secretName)) }}
{{- fail "publish.database.secretName: name the Secret holding the primary database's DSN" }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (eq (toString .minAvailable | empty) (toString .maxUnavailable | empty)) }}
{{- fail "podDisruptionBudget: set exactly one of `minAvailable` and `maxUnavailable`, the other to \"\"" }}
{{- end }}
{{- end }}
{{- range $file, $_ := .Values.policies.tenants }}
{{- if hasPrefix "templates." $file }}
{{- fail (printf "policies.tenants: `%s` clashes with the keys kept for templates; rename it" $file) }}
{{- end }}
{{- end }}
{{- $socketDir := dir .Values.grpc.socketPath }}
{{- range splitList "," (include "rolegate.listen" .) }}
{{- if and (hasPrefix "unix:" .) (ne (dir (trimPrefix "unix:" .)) $socketDir) }}
{{- fail (printf "grpc.listen: `%s` must be in `%s`, the writable socket directory (grpc.socketPath)" . $socketDir) }}
{{- end }}
{{- end }}
{{- if and (eq (include "rolegate.probeType" .) "grpc") .Values.tls.enabled }}
{{- fail "probes.type `grpc` cannot reach a TLS listener (Kubernetes' gRPC probes speak plaintext); use `http` or `auto`" }}
{{- end }}
{{- if and .Values.tls.clientAuth (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth needs tls.enabled: client certificates are checked in the TLS handshake" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer that signs the certificate" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) }}
{{- fail "tls.certManager.enabled needs tls.enabled" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.clientPodLabels) }}
{{- fail "networkPolicy.clientPodLabels: name the labels of the pods that may call rolegate" }}
{{- end }}
{{- if and (eq (include "rolegate.probeType" .) "grpc") (not (include "rolegate.grpcOverTcp" .)) }}
{{- fail "probes.type `grpc` needs a TCP address in grpc.listen; use `http` for a socket-only server" }}
{{- end }}
{{- end }}
