{{/* Names and labels */}}
{{- define "roadsigns.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway") */}}
{{- define "roadsigns.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "roadsigns.labels" -}}
{{ include "roadsigns.selectorLabels" . }}
app.kubernetes.io/part-of: roadsigns
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{- define "roadsigns.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "roadsigns.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image of one component block: (dict "ctx" $ "values" .Values.gateway) */}}
{{- define "roadsigns.image" -}}
{{- printf "%s%s:%s" .ctx.Values.image.registry .values.image.repository (default .ctx.Chart.AppVersion .ctx.Values.image.tag) -}}
{{- end -}}

{{/* Environment every roadsigns process gets; passwords come from the Secret and are spliced into
     the URLs by Kubernetes' $(VAR) expansion, so they never appear in a rendered manifest. */}}
{{- define "roadsigns.env" -}}
{{- $v := .ctx.Values -}}
- name: DATABASE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $v.existingSecret }}, key: database-password}}
{{- if $v.redis.auth }}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $v.existingSecret }}, key: redis-password}}
{{- end }}
- name: ROADSIGNS_ENVIRONMENT
  value: {{ $v.environment | quote }}
- name: ROADSIGNS_DATABASE_URL
  value: {{ printf "postgresql+psycopg2://%s:$(DATABASE_PASSWORD)@%s:%v/%s" $v.database.user $v.database.host $v.database.port $v.database.name | quote }}
- name: ROADSIGNS_BROKER_URL
  value: {{ printf "redis://%s%s:%v/%v" (ternary ":$(REDIS_PASSWORD)@" "" $v.redis.auth) $v.redis.host $v.redis.port $v.redis.db | quote }}
- name: ROADSIGNS_BLOB_DIR
  value: /data/blobs
- name: ROADSIGNS_TASK_TIME_LIMIT_S
  value: {{ $v.config.taskTimeLimitSeconds | quote }}
- name: ROADSIGNS_VISIBILITY_TIMEOUT_S
  value: {{ $v.config.visibilityTimeoutSeconds | quote }}
{{- with $v.mlflow.trackingUri }}
- name: ROADSIGNS_MLFLOW_TRACKING_URI
  value: {{ . | quote }}
- name: MLFLOW_DISABLE_TELEMETRY
  value: "true"
{{- end }}
{{- range $name, $key := .values.secretEnv }}
- name: {{ $name }}
  valueFrom: {secretKeyRef: {name: {{ $v.existingSecret }}, key: {{ $key }}, optional: {{ not (and (has $name (list "ROADSIGNS_API_KEYS" "ROADSIGNS_LINK_SECRET")) $v.apiKeysRequired) }}}}
{{- end }}
{{- range $name, $value := merge (dict) .values.env $v.config.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Pod fields shared by every component: (dict "ctx" $ "values" .Values.ocr) */}}
{{- define "roadsigns.podPlacement" -}}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "roadsigns.blobsClaim" -}}
{{- default (printf "%s-blobs" (include "roadsigns.fullname" .)) .Values.blobs.existingClaim -}}
{{- end -}}

{{/* The three worker pools and the queue each must consume (task routing in roadsigns.shared.tasks). */}}
{{- define "roadsigns.pools" -}}
detector: detect
ocr: ocr
tracker: track
webhook: webhook
{{- end -}}

{{/* Refuse values that would break GPU pinning, per-pool autoscaling or graceful shutdown. */}}
{{- define "roadsigns.validateValues" -}}
{{- $v := .Values -}}
{{- $errors := list -}}
{{- $det := $v.detector -}}
{{- if lt (int (index ($det.resources.limits | default dict) "nvidia.com/gpu" | default 0)) 1 -}}
{{- $errors = append $errors "detector.resources.limits must hold nvidia.com/gpu >= 1: the detector pool runs on GPUs" -}}
{{- end -}}
{{- if not $det.nodeSelector -}}
{{- $errors = append $errors "detector.nodeSelector must not be empty: it pins the detector pool to GPU nodes" -}}
{{- end -}}
{{- $tolerated := false -}}
{{- range $det.tolerations }}{{ if eq (.key | default "") "nvidia.com/gpu" }}{{ $tolerated = true }}{{ end }}{{ end -}}
{{- if not $tolerated -}}
{{- $errors = append $errors "detector.tolerations must tolerate the nvidia.com/gpu taint of GPU nodes" -}}
{{- end -}}
{{- range $part := list "requests" "limits" -}}
{{- if hasKey (index $v.ocr.resources $part | default dict) "nvidia.com/gpu" -}}
{{- $errors = append $errors (printf "ocr.resources.%s must not ask for nvidia.com/gpu: the OCR pool runs on CPU nodes" $part) -}}
{{- end -}}
{{- end -}}
{{- range $pool, $queue := include "roadsigns.pools" . | fromYaml -}}
{{- $p := index $v $pool -}}
{{- if ne $p.queue $queue -}}
{{- $errors = append $errors (printf "%s.queue is %q: the %s pool must consume and scale on its own queue %q" $pool $p.queue $pool $queue) -}}
{{- end -}}
{{- if le (int $p.terminationGracePeriodSeconds) (int $v.config.taskTimeLimitSeconds) -}}
{{- $errors = append $errors (printf "%s.terminationGracePeriodSeconds (%v) must exceed config.taskTimeLimitSeconds (%v) so a running task can finish" $pool $p.terminationGracePeriodSeconds $v.config.taskTimeLimitSeconds) -}}
{{- end -}}
{{- if and $p.autoscaling.enabled (gt (int $p.autoscaling.minReplicas) (int $p.autoscaling.maxReplicas)) -}}
{{- $errors = append $errors (printf "%s.autoscaling.minReplicas must not exceed maxReplicas" $pool) -}}
{{- end -}}
{{- end -}}
{{- if and (has $v.environment (list "staging" "production")) (not $v.apiKeysRequired) -}}
{{- $errors = append $errors (printf "apiKeysRequired must be true when environment is %s: the gateway refuses to start without API keys there" $v.environment) -}}
{{- end -}}
{{- if le (int $v.config.visibilityTimeoutSeconds) (int $v.config.taskTimeLimitSeconds) -}}
{{- $errors = append $errors "config.visibilityTimeoutSeconds must exceed config.taskTimeLimitSeconds, or Redis hands running tasks to a second worker" -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nroadsigns: invalid values:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
