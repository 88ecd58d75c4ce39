{{/*
The operator UI (values.ui). Without it the scaler serves /ui to loopback
clients only (kubectl port-forward); with ui.enabled the rendered config
serves it to every client that has the credentials, read from key ui.secret
of the chart's Secret (or existingSecret).
*/}}

{{/* Sets config.ui in the config dict being rendered ($cfg, changed in place). */}}
{{- define "runner-scaler.ui.config" -}}
{{- $root := index . 0 }}{{- $cfg := index . 1 }}
{{- if $root.Values.ui.enabled }}
{{- if not (include "runner-scaler.mountSecret" $root) }}
{{- fail "ui.enabled needs the Secret for the UI's credentials: set secret.create or secret.existingSecret" }}
{{- end }}
{{- $ui := $cfg.ui | default dict }}
{{- $_ := set $ui "enabled" true }}
{{- if not (hasKey $ui "auth") }}
{{- $a := $root.Values.ui.auth }}
{{- $file := printf "%s/ui.secret" (include "runner-scaler.secretsDir" $root) }}
{{- $auth := dict "type" $a.type }}
{{- if eq $a.type "basic" }}
{{- $_ := set $auth "username" $a.username }}
{{- $_ := set $auth "password_file" $file }}
{{- else }}
{{- $_ := set $auth "token_file" $file }}
{{- end }}
{{- $_ := set $ui "auth" $auth }}
{{- end }}
{{- $_ := set $cfg "ui" $ui }}
{{- end }}
{{- end }}

{{/* The ui.secret key of the chart's Secret: the value given (required, like
every credential: the chart never generates one, so no render changes it). */}}
{{- define "runner-scaler.ui.secretData" -}}
{{- $root := index . 0 }}
{{- if and $root.Values.ui.enabled (not (hasKey ($root.Values.config.ui | default dict) "auth")) }}
{{- if not $root.Values.ui.auth.secret }}
{{- fail "ui.auth.secret: required with ui.enabled (the UI's password or token; e.g. openssl rand -hex 20), or secret.existingSecret with key ui.secret; the chart never generates one" }}
{{- end }}
ui.secret: {{ $root.Values.ui.auth.secret | trim | b64enc | quote }}
{{- end }}
{{- end }}

{{/* The Ingress path for /ui, beside the webhooks path. */}}
{{- define "runner-scaler.ui.ingressPath" -}}
{{- $root := index . 0 }}{{- $fullname := index . 1 }}
{{- if and $root.Values.ui.enabled $root.Values.ui.ingress }}
- path: /ui
  pathType: Prefix
  backend:
    service:
      name: {{ $fullname }}
      port:
        name: http
{{- end }}
{{- end }}
