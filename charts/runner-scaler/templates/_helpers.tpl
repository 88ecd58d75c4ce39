{{/* Names */}}
{{- define "runner-scaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runner-scaler.fullname" -}}
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

{{- define "runner-scaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runner-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runner-scaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The namespace of every namespaced object (namespaceOverride, else the release's). */}}
{{- define "runner-scaler.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object: the chart's own, then commonLabels (which cannot override them). */}}
{{- define "runner-scaler.labels" -}}
{{- $own := dict "helm.sh/chart" (include "runner-scaler.chart" .) "app.kubernetes.io/version" .Chart.AppVersion "app.kubernetes.io/managed-by" .Release.Service "app.kubernetes.io/part-of" "runner-scaler" }}
{{- $own = merge $own (include "runner-scaler.selectorLabels" . | fromYaml) }}
{{- range $k, $v := .Values.commonLabels }}
{{- if not (or (hasKey $own $k) (eq $k "app.kubernetes.io/component")) }}{{ $_ := set $own $k (toString $v) }}{{ end }}
{{- end }}
{{- toYaml $own }}
{{- end }}

{{/*
An object's annotations block: commonAnnotations merged with its own (its own
win), or nothing. Call as (list $ extra) and indent 2 under metadata; the
output starts with a newline when not empty.
*/}}
{{- define "runner-scaler.annotations" -}}
{{- $root := index . 0 }}
{{- $all := merge (deepCopy (index . 1 | default dict)) (deepCopy ($root.Values.commonAnnotations | default dict)) }}
{{- if $all }}
annotations:
{{- toYaml $all | nindent 2 }}
{{- end }}
{{- end }}

{{- define "runner-scaler.componentLabels" -}}
{{ include "runner-scaler.labels" . }}
app.kubernetes.io/component: scaler
{{- end }}

{{- define "runner-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runner-scaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runner-scaler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding forge credentials: an existing one, or the chart's. */}}
{{- define "runner-scaler.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- include "runner-scaler.fullname" . }}
{{- end }}
{{- end }}

{{- define "runner-scaler.mountSecret" -}}
{{- if or .Values.secret.create .Values.secret.existingSecret }}true{{ end }}
{{- end }}

{{- define "runner-scaler.forgeCA" -}}
{{- if or .Values.forgeCA.configMap .Values.forgeCA.secret }}true{{ end }}
{{- end }}
{{- define "runner-scaler.forgeCADir" -}}/etc/runner-scaler/forge-ca{{- end }}
{{- define "runner-scaler.forgeCAPath" -}}/etc/runner-scaler/forge-ca/ca.crt{{- end }}

{{- define "runner-scaler.secretsDir" -}}/etc/runner-scaler/secrets{{- end }}
{{- define "runner-scaler.configPath" -}}/etc/runner-scaler/config.yaml{{- end }}

{{- define "runner-scaler.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled }}true{{ end }}
{{- end }}

{{- define "runner-scaler.runnerNamespace" -}}
{{- default (include "runner-scaler.namespace" .) .Values.runnerNamespace }}
{{- end }}

{{- define "runner-scaler.cacheServerName" -}}
{{- printf "%s-cache" (include "runner-scaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runner-scaler.cacheServerURL" -}}
{{- printf "http://%s.%s.svc:%d/" (include "runner-scaler.cacheServerName" .) (include "runner-scaler.namespace" .) (int .Values.cacheServer.port) }}
{{- end }}

{{/* Does a forge (a config.forges item) use the cache server? */}}
{{- define "runner-scaler.forgeUsesCache" -}}
{{- $root := index . 0 }}{{- $f := index . 1 }}
{{- if $root.Values.cacheServer.enabled }}
{{- if $root.Values.cacheServer.forges }}
{{- if has $f.name $root.Values.cacheServer.forges }}true{{ end }}
{{- else if eq (toString $f.type) "gitea" }}true{{ end }}
{{- end }}
{{- end }}

{{/*
The scaler config as rendered into the ConfigMap: values.config plus what the
chart wires in (secret files, runner namespace, listen address, leader election).
*/}}
{{- define "runner-scaler.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $dir := include "runner-scaler.secretsDir" . }}
{{- $mount := include "runner-scaler.mountSecret" . }}
{{- $forges := list }}
{{- range $f := ($cfg.forges | default list) }}
{{- $g := deepCopy $f }}
{{- if $mount }}
{{- if and (ne (toString $f.type) "fake") (not (or (hasKey $f "token_file") (hasKey $f "token_env") (hasKey $f "github_app"))) }}
{{- $_ := set $g "token_file" (printf "%s/%s.token" $dir $f.name) }}
{{- end }}
{{- if and (hasKey $f "github_app") (kindIs "map" $f.github_app) }}
{{- if not (hasKey $f.github_app "private_key_file") }}
{{- $_ := set $g.github_app "private_key_file" (printf "%s/%s.github-app-key" $dir $f.name) }}
{{- end }}
{{- end }}
{{- if not (or (hasKey $f "webhook_secret_files") (hasKey $f "webhook_secret_envs")) }}
{{- $_ := set $g "webhook_secret_files" (list (printf "%s/%s.webhook-secret" $dir $f.name)) }}
{{- end }}
{{- end }}
{{- if include "runner-scaler.forgeUsesCache" (list $ $f) }}
{{- $opts := $g.options | default dict }}
{{- $_ := set $opts "cache_server" (include "runner-scaler.cacheServerURL" $) }}
{{- $_ := set $opts "cache_secret_file" (printf "%s/cache-server.secret" $dir) }}
{{- $_ := set $g "options" $opts }}
{{- end }}
{{- $forges = append $forges $g }}
{{- end }}
{{- $_ := set $cfg "forges" $forges }}
{{- $providers := list }}
{{- range $p := ($cfg.providers | default list) }}
{{- $q := deepCopy $p }}
{{- if eq (toString $p.type) "kubernetes" }}
{{- $opts := $q.options | default dict }}
{{- if not (hasKey $opts "namespace") }}
{{- $_ := set $opts "namespace" (include "runner-scaler.runnerNamespace" $) }}
{{- end }}
{{- $_ := set $q "options" $opts }}
{{- end }}
{{- $providers = append $providers $q }}
{{- end }}
{{- $_ := set $cfg "providers" $providers }}
{{- $server := $cfg.server | default dict }}
{{- if not (hasKey $server "host") }}{{ $_ := set $server "host" "0.0.0.0" }}{{ end }}
{{- if not (hasKey $server "port") }}{{ $_ := set $server "port" 8080 }}{{ end }}
{{- $_ := set $cfg "server" $server }}
{{- if include "runner-scaler.leaderElection" . }}
{{- $le := $cfg.leader_election | default dict }}
{{- if and (hasKey $le "enabled") (not $le.enabled) }}
{{- fail (printf "config.leader_election.enabled is false but replicaCount is %d: more than one replica needs leader election (only the leader may act)" (int .Values.replicaCount)) }}
{{- end }}
{{- $_ := set $le "enabled" true }}
{{- if not (hasKey $le "namespace") }}{{ $_ := set $le "namespace" (include "runner-scaler.namespace" .) }}{{ end }}
{{- if not (hasKey $le "lease_name") }}{{ $_ := set $le "lease_name" (include "runner-scaler.fullname" .) }}{{ end }}
{{- $_ := set $cfg "leader_election" $le }}
{{- end }}
{{- include "runner-scaler.ui.config" (list . $cfg) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Namespaces the runner pods live in (kubernetes providers and their pools). */}}
{{- define "runner-scaler.runnerNamespaces" -}}
{{- $cfg := include "runner-scaler.config" . | fromYaml }}
{{- $k8s := dict }}
{{- $nss := list }}
{{- range $p := ($cfg.providers | default list) }}
{{- if eq (toString $p.type) "kubernetes" }}
{{- $_ := set $k8s $p.name true }}
{{- $nss = append $nss (dig "options" "namespace" "" $p) }}
{{- range $ns := (dig "options" "extra_namespaces" list $p) }}{{ $nss = append $nss $ns }}{{ end }}
{{- end }}
{{- end }}
{{- range $pool := ($cfg.pools | default list) }}
{{- if hasKey $k8s (toString $pool.provider) }}
{{- $ns := dig "provider_options" "namespace" "" $pool }}
{{- if $ns }}{{ $nss = append $nss $ns }}{{ end }}
{{- end }}
{{- end }}
{{- range $ns := .Values.rbac.extraNamespaces }}
{{- $nss = append $nss $ns }}
{{- end }}
{{- toYaml (dict "namespaces" ($nss | compact | uniq | sortAlpha)) }}
{{- end }}

{{/*
The Role rules the Kubernetes provider needs for runner pods: exactly
providers/kubernetes REQUIRED_PERMISSIONS (the chart tests compare them).
Credential Secrets are owned by their Pod, so garbage collection deletes them.
SelfSubjectAccessReview (used by `check`) is granted to every authenticated
user by the built-in system:basic-user ClusterRole, and a Role cannot grant a
cluster-scoped resource anyway.
*/}}
{{- define "runner-scaler.runnerRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["create", "delete", "get", "list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "get", "update"]
{{- end }}

{{/* Leader election: create any Lease (create cannot be limited by name), read and renew only ours. */}}
{{- define "runner-scaler.leaseRules" -}}
{{- $cfg := include "runner-scaler.config" . | fromYaml }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ $cfg.leader_election.lease_name | quote }}]
  verbs: ["get", "update"]
{{- end }}

{{/*
Cross-references the schema cannot express, checked at install: helm merges
maps but replaces lists, so a values file that renames the forge but keeps
the default pools would otherwise only fail when the pod starts.
*/}}
{{- define "runner-scaler.validate" -}}
{{- $forges := list }}{{- $providers := list }}
{{- range $i, $f := .Values.config.forges }}
{{- if has $f.name $forges }}{{ fail (printf "config.forges[%d].name: duplicate name %q" $i $f.name) }}{{ end }}
{{- $forges = append $forges $f.name }}
{{- end }}
{{- range $i, $p := .Values.config.providers }}
{{- if has $p.name $providers }}{{ fail (printf "config.providers[%d].name: duplicate name %q" $i $p.name) }}{{ end }}
{{- $providers = append $providers $p.name }}
{{- end }}
{{- range $i, $pool := .Values.config.pools }}
{{- $minIdle := int (default 0 $pool.min_idle) }}{{- $max := int (ternary $pool.max 10 (hasKey $pool "max")) }}
{{- if gt $minIdle $max }}
{{- fail (printf "config.pools[%d].max: must be >= min_idle (got %d < %d)" $i $max $minIdle) }}
{{- end }}
{{- if not (has $pool.forge $forges) }}
{{- fail (printf "config.pools[%d].forge: no forge named %q in config.forges (have: %s)" $i $pool.forge (join ", " $forges)) }}
{{- end }}
{{- if not (has $pool.provider $providers) }}
{{- fail (printf "config.pools[%d].provider: no provider named %q in config.providers (have: %s)" $i $pool.provider (join ", " $providers)) }}
{{- end }}
{{- end }}
{{- include "runner-scaler.validateSecret" . }}
{{- include "runner-scaler.validatePermissions" . }}
{{- if and .Values.forgeCA.configMap .Values.forgeCA.secret }}
{{- fail "forgeCA: set configMap or secret, not both" }}
{{- end }}
{{- $pools := list }}{{ range .Values.config.pools }}{{ $pools = append $pools .name }}{{ end }}
{{- range $i, $so := .Values.keda.scaledObjects }}
{{- if not (has $so.pool $pools) }}
{{- fail (printf "keda.scaledObjects[%d].pool: no pool named %q in config.pools (have: %s)" $i $so.pool (join ", " $pools)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Does a forge (a config.forges item) need a key of the mounted Secret? (list key-suffix forge) */}}
{{- define "runner-scaler.needsSecretKey" -}}
{{- $what := index . 0 }}{{- $f := index . 1 }}
{{- if eq $what "token" }}
{{- if not (or (hasKey $f "token_file") (hasKey $f "token_env") (hasKey $f "github_app") (eq (toString $f.type) "fake")) }}true{{ end }}
{{- else if eq $what "webhook-secret" }}
{{- if not (or (hasKey $f "webhook_secret_files") (hasKey $f "webhook_secret_envs")) }}true{{ end }}
{{- else if eq $what "github-app-key" }}
{{- if and (hasKey $f "github_app") (kindIs "map" $f.github_app) }}{{ if not (hasKey $f.github_app "private_key_file") }}true{{ end }}{{ end }}
{{- end }}
{{- end }}

{{/*
The forges' credentials must come from somewhere at install, never from a
render: a given value (secret.forges.NAME.*), a Secret you manage
(secret.existingSecret), or the forge's own *_file / *_env keys. Nothing is
generated, so `helm template | kubectl apply` and Argo CD never change a
webhook secret the forge already signs with.
*/}}
{{- define "runner-scaler.validateSecret" -}}
{{- $s := .Values.secret }}
{{- if not $s.existingSecret }}
{{- $keys := dict "token" "token" "webhook-secret" "webhookSecret" "github-app-key" "githubAppPrivateKey" }}
{{- range $i, $f := .Values.config.forges }}
{{- $given := get ($s.forges | default dict) $f.name | default dict }}
{{- range $what := list "token" "webhook-secret" "github-app-key" }}
{{- if include "runner-scaler.needsSecretKey" (list $what $f) }}
{{- if not $s.create }}
{{- fail (printf "secret.existingSecret: required when secret.create is false (config.forges[%d] %q needs key %s.%s; or set its own *_file / *_env)" $i $f.name $f.name $what) }}
{{- end }}
{{- if not (get $given (get $keys $what)) }}
{{- fail (printf "secret.forges.%s.%s: required (config.forges[%d] reads %s.%s from the Secret). The chart never generates one: a render must not change it. Give it (for a webhook secret: openssl rand -hex 32), or name a Secret you manage in secret.existingSecret, or set the forge's own *_file / *_env" $f.name (get $keys $what) $i $f.name $what) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.cacheServer.enabled (not $s.cacheServerSecret) }}
{{- fail "secret.cacheServerSecret: required with cacheServer.enabled (or secret.existingSecret with key cache-server.secret); the chart never generates one" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The scaler warns about a secret file readable by a group other than its own
(`runner-scaler check`). The kubelet makes Secret files root:fsGroup and
group-readable, so fsGroup must be the container's own group.
*/}}
{{- define "runner-scaler.validatePermissions" -}}
{{- if include "runner-scaler.mountSecret" . }}
{{- $fsGroup := .Values.podSecurityContext.fsGroup }}
{{- $group := .Values.securityContext.runAsGroup | default .Values.podSecurityContext.runAsGroup }}
{{- if or (not $fsGroup) (not $group) }}
{{- fail "podSecurityContext.fsGroup and runAsGroup: both required so the non-root scaler can read its Secret files (mounted root:fsGroup, mode 0440)" }}
{{- end }}
{{- if ne (int $fsGroup) (int $group) }}
{{- fail (printf "podSecurityContext.fsGroup (%d) must equal runAsGroup (%d): Secret files are group-readable by fsGroup, and the scaler accepts group-read only for its own group" (int $fsGroup) (int $group)) }}
{{- end }}
{{- end }}
{{- end }}
