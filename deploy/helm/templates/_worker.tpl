{{/* A Celery worker pool: Deployment, metrics Service and KEDA ScaledObject.
     Called from the pool's folder as (dict "ctx" $ "pool" "ocr"). */}}

{{- define "roadsigns.worker.deployment" -}}
{{- $v := index .ctx.Values .pool -}}
{{- $name := printf "%s-%s" (include "roadsigns.fullname" .ctx) .pool -}}
{{- $labels := dict "ctx" .ctx "component" .pool -}}
{{- $module := $v.module | default (printf "roadsigns.%s.worker" .pool) -}}
{{- $blobs := not (has .pool (list "ocr" "webhook")) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels: {{- include "roadsigns.labels" $labels | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  selector:
    matchLabels: {{- include "roadsigns.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels: {{- include "roadsigns.labels" $labels | nindent 8 }}
    spec:
      serviceAccountName: {{ include "roadsigns.serviceAccountName" .ctx }}
      # Celery's warm shutdown on SIGTERM lets the running task finish within this grace period.
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- include "roadsigns.podPlacement" (dict "ctx" .ctx "values" $v) | trim | nindent 6 }}
      containers:
        - name: {{ .pool }}
          image: {{ include "roadsigns.image" (dict "ctx" .ctx "values" $v) }}
          imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
          # Empty the multiprocess samples folder first: it outlives a container restart.
          command: ["sh", "-c", 'rm -rf "$PROMETHEUS_MULTIPROC_DIR"/* && exec celery "$@"', "--"]
          args:
            - -A
            - {{ $module }}
            - worker
            - -Q
            - {{ $v.queue }}
            - -c
            - {{ $v.concurrency | quote }}
            - -n
            - {{ .pool }}@$(POD_NAME)
            - -l
            - INFO
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: ROADSIGNS_METRICS_PORT
              value: "9100"
            - name: PROMETHEUS_MULTIPROC_DIR
              value: /tmp/prometheus
            {{- include "roadsigns.env" (dict "ctx" .ctx "values" $v) | nindent 12 }}
          ports:
            - {name: metrics, containerPort: 9100}
          livenessProbe:
            exec:
              command: ["sh", "-c", "celery -A {{ $module }} inspect ping -d {{ .pool }}@$POD_NAME --timeout 20"]
            initialDelaySeconds: 120
            periodSeconds: 60
            timeoutSeconds: 45
            failureThreshold: 3
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- toYaml .ctx.Values.securityContext | nindent 12 }}
          # Read-only root: Python's temporary files, the samples folder, and Ultralytics' and
          # matplotlib's config dirs (YOLO_CONFIG_DIR, MPLCONFIGDIR in the detector image).
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            - {name: metrics, mountPath: /tmp/prometheus}
            - {name: config, mountPath: /home/app/.config}
            {{- if $blobs }}
            - {name: blobs, mountPath: /data/blobs}
            {{- end }}
      volumes:
        - {name: tmp, emptyDir: {}}
        - {name: metrics, emptyDir: {}}
        - {name: config, emptyDir: {}}
        {{- if $blobs }}
        - name: blobs
          persistentVolumeClaim: {claimName: {{ include "roadsigns.blobsClaim" .ctx }}}
        {{- end }}
{{- end -}}

{{- define "roadsigns.worker.metricsService" -}}
{{- $labels := dict "ctx" .ctx "component" .pool -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-%s-metrics" (include "roadsigns.fullname" .ctx) .pool }}
  labels:
    {{- include "roadsigns.labels" $labels | nindent 4 }}
    roadsigns.io/metrics: "true"
spec:
  clusterIP: None  # one scrape target per pod
  selector: {{- include "roadsigns.selectorLabels" $labels | nindent 4 }}
  ports:
    - {name: metrics, port: 9100, targetPort: metrics}
{{- end -}}

{{- define "roadsigns.worker.scaledObject" -}}
{{- $v := index .ctx.Values .pool -}}
{{- $r := .ctx.Values.redis -}}
{{- $name := printf "%s-%s" (include "roadsigns.fullname" .ctx) .pool -}}
{{- if $v.autoscaling.enabled -}}
# Scales the {{ .pool }} pool on the length of its own Redis list `{{ $v.queue }}` (waiting tasks;
# running ones are unacknowledged and no longer in the list).
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels: {{- include "roadsigns.labels" (dict "ctx" .ctx "component" .pool) | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ $name }}
  minReplicaCount: {{ $v.autoscaling.minReplicas }}
  maxReplicaCount: {{ $v.autoscaling.maxReplicas }}
  pollingInterval: {{ $v.autoscaling.pollingInterval }}
  cooldownPeriod: {{ $v.autoscaling.cooldownPeriod }}
  triggers:
    - type: redis
      metadata:
        address: {{ printf "%s:%v" $r.host $r.port | quote }}
        databaseIndex: {{ $r.db | quote }}
        listName: {{ $v.queue | quote }}
        listLength: {{ $v.autoscaling.listLength | quote }}
      {{- if $r.auth }}
      authenticationRef:
        name: {{ include "roadsigns.fullname" .ctx }}-redis
      {{- end }}
{{- end }}
{{- end -}}
