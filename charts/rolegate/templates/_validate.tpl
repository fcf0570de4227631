{{/* Checks across values that values.schema.json cannot express. */}}
{{- define "rolegate.validate" -}}
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
{{- if and (eq (include "rolegate.probeType" .) "grpc") (not (include "rolegate.grpcOverTcp" .)) }}
{{- fail "probes.type `grpc` needs a TCP address in grpc.listen; use `http` for a socket-only server" }}
{{- end }}
{{- end }}
