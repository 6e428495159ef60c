{{/* Object names match deploy/ (kustomize), so the two install paths are interchangeable. */}}
{{- define "extauthz.name" -}}
{{- if eq .Values.mode "gateway" -}}extauthz-gateway{{- else if eq .Values.mode "authorizer" -}}extauthz{{- else -}}
{{- fail (printf "mode must be gateway or authorizer, not %q" .Values.mode) -}}
{{- end -}}
{{- end -}}

{{- define "extauthz.gateway" -}}{{ if eq .Values.mode "gateway" }}true{{ end }}{{- end -}}

{{/* The state store: sqlite (gateway default) or postgres (authorizer default; a fleet). */}}
{{- define "extauthz.state" -}}
{{- $type := .Values.state.type | default (ternary "sqlite" "postgres" (eq .Values.mode "gateway")) -}}
{{- if and (eq $type "sqlite") (ne .Values.mode "gateway") -}}
{{- fail "mode authorizer runs several replicas: use state.type postgres" -}}
{{- end -}}
{{- if not (has $type (list "sqlite" "postgres")) -}}
{{- fail (printf "state.type must be sqlite or postgres, not %q" $type) -}}
{{- end -}}
{{- $type -}}
{{- end -}}

{{- define "extauthz.replicas" -}}
{{- if eq (include "extauthz.state" .) "sqlite" -}}
{{- if and .Values.replicas (gt (int .Values.replicas) 1) -}}{{- fail "state.type sqlite holds one volume: replicas must be 1" -}}{{- end -}}
1
{{- else -}}
{{- .Values.replicas | default (ternary 3 2 (eq .Values.mode "gateway")) -}}
{{- end -}}
{{- end -}}

{{- define "extauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extauthz.name" . }}
{{- end -}}

{{- define "extauthz.labels" -}}
{{ include "extauthz.selectorLabels" . }}
app.kubernetes.io/part-of: extauthz
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "extauthz.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{- define "extauthz.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* The policy file: the value, else the chart's default for the mode. */}}
{{- define "extauthz.policy" -}}
{{- if .Values.policy -}}{{ .Values.policy }}
{{- else if eq .Values.mode "gateway" -}}{{ .Files.Get "files/policy.yaml" }}
{{- else -}}{{ .Files.Get "files/authorizer-policy.yaml" }}
{{- end -}}
{{- end -}}

{{/* Site settings: the default env file for the mode (KEY=VALUE lines), then .Values.settings. */}}
{{- define "extauthz.settings" -}}
{{- $out := dict -}}
{{- $file := ternary "files/settings.env" "files/authorizer-settings.env" (eq .Values.mode "gateway") -}}
{{- range $line := splitList "\n" (.Files.Get $file) -}}
{{- $line = trim $line -}}
{{- if and $line (not (hasPrefix "#" $line)) -}}
{{- $kv := splitn "=" 2 $line -}}
{{- $_ := set $out $kv._0 $kv._1 -}}
{{- end -}}
{{- end -}}
{{- toYaml (merge (deepCopy .Values.settings) $out) -}}
{{- end -}}

{{/* `extauthz serve`: the same container in both modes (after its name and restartPolicy). */}}
{{- define "extauthz.serveContainer" -}}
image: {{ include "extauthz.image" . }}
args: [serve, --config, /etc/extauthz/policy.yaml, --grpc-address, "0.0.0.0:9191", --http-address, "0.0.0.0:9192"]
envFrom:
  - configMapRef: {name: extauthz-env}
env:
  {{- if eq (include "extauthz.state" .) "sqlite" }}
  - name: EXTAUTHZ_STATE_URL
    value: sqlite:////var/lib/extauthz/state.db
  {{- else }}
  - name: EXTAUTHZ_STATE_URL
    valueFrom:
      secretKeyRef: {name: {{ .Values.state.postgres.secretName }}, key: {{ .Values.state.postgres.secretKey }}}
  {{- end }}
  - name: LITELLM_MASTER_KEY
    valueFrom:
      secretKeyRef: {name: {{ .Values.secretName }}, key: LITELLM_MASTER_KEY}
ports:
  - {name: grpc, containerPort: 9191, protocol: TCP}
  - {name: admin-http, containerPort: 9192, protocol: TCP}
startupProbe: {{- toYaml .Values.extauthz.startupProbe | nindent 2 }}
livenessProbe: {{- toYaml .Values.extauthz.livenessProbe | nindent 2 }}
readinessProbe: {{- toYaml .Values.extauthz.readinessProbe | nindent 2 }}
resources: {{- toYaml .Values.extauthz.resources | nindent 2 }}
securityContext: {{- include "extauthz.securityContext" . | nindent 2 }}
volumeMounts:
  - {name: policy, mountPath: /etc/extauthz, readOnly: true}
  {{- if eq (include "extauthz.state" .) "sqlite" }}
  - {name: state, mountPath: /var/lib/extauthz}
  {{- end }}
  - {name: tmp, mountPath: /tmp}
{{- end -}}
