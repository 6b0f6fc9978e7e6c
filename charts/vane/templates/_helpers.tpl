{{/* The release's base name: "vane" for a release called vane, else "<release>-vane". */}}
{{- define "vane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vane
{{- end -}}

{{- define "vane.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the datastore URLs and the bootstrap key: the user's own, or the chart's. */}}
{{- define "vane.secretName" -}}
{{- default (include "vane.fullname" .) .Values.datastores.existingSecret -}}
{{- end -}}

{{/* The environment variable that sets each service's port, by service and port name. */}}
{{- define "vane.portVariables" -}}
registry: {http: VANE_REGISTRY_HTTP_PORT, grpc: VANE_REGISTRY_GRPC_PORT}
ingest: {http: VANE_INGEST_HTTP_PORT, grpc: VANE_INGEST_GRPC_PORT}
evaluator: {http: VANE_EVALUATOR_PORT}
aggregator: {http: VANE_AGGREGATOR_PORT}
alert: {http: VANE_ALERT_PORT}
{{- end -}}

{{/* Pods roll when their configuration changes. */}}
{{- define "vane.configChecksum" -}}
{{- $config := include (print .Template.BasePath "/configmap.yaml") . -}}
{{- $secret := include (print .Template.BasePath "/secret.yaml") . -}}
{{- print $config $secret | sha256sum -}}
{{- end -}}

{{/* The datastores' URLs: the in-chart evaluation ones (datastores.bundled), or the user's. */}}
{{- define "vane.databaseUrl" -}}
{{- if .Values.datastores.bundled.enabled -}}
{{- $password := required "datastores.bundled.postgres.password is required with datastores.bundled.enabled" .Values.datastores.bundled.postgres.password -}}
{{- printf "postgresql://postgres:%s@%s-postgres:5432/vane" $password (include "vane.fullname" .) -}}
{{- else -}}
{{- required "datastores.databaseUrl is required" .Values.datastores.databaseUrl -}}
{{- end -}}
{{- end -}}

{{- define "vane.natsUrl" -}}
{{- if .Values.datastores.bundled.enabled -}}
{{- printf "nats://%s-nats:4222" (include "vane.fullname" .) -}}
{{- else -}}
{{- required "datastores.natsUrl is required" .Values.datastores.natsUrl -}}
{{- end -}}
{{- end -}}

{{- define "vane.redisUrl" -}}
{{- if .Values.datastores.bundled.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "vane.fullname" .) -}}
{{- else -}}
{{- required "datastores.redisUrl is required" .Values.datastores.redisUrl -}}
{{- end -}}
{{- end -}}

{{/* The migration runs as a Helm hook before install and upgrade, except with the in-chart datastores, which
     a pre-install hook would run before: then it is a plain Job that retries until Postgres answers. */}}
{{- define "vane.migrationIsHook" -}}
{{- if not .Values.datastores.bundled.enabled -}}true{{- end -}}
{{- end -}}
