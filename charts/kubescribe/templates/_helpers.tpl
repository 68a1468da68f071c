{{/* An image reference from (dict "image" <image values> "Chart" .Chart): repository@digest, else repository:tag. */}}
{{- define "kubescribe.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The image of the operator, the gateway and the uninstall hook. */}}
{{- define "kubescribe.image" -}}
{{- include "kubescribe.imageRef" (dict "image" .Values.image "Chart" .Chart) -}}
{{- end -}}

{{/* The runner's image, which the operator gives the runner Jobs. */}}
{{- define "kubescribe.runner.image" -}}
{{- include "kubescribe.imageRef" (dict "image" .Values.runner.image "Chart" .Chart) -}}
{{- end -}}

{{/* A pod spec's image pull secrets, affinity and priority class, from a component's values and the chart's. */}}
{{- define "kubescribe.podPlacement" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* The name of the operator's Deployment, ServiceAccount, ClusterRole and ClusterRoleBinding. */}}
{{- define "kubescribe.operator.name" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels that select the operator's pods. */}}
{{- define "kubescribe.operator.selectorLabels" -}}
app.kubernetes.io/name: kubescribe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The labels of the operator's objects and pods. */}}
{{- define "kubescribe.operator.labels" -}}
{{ include "kubescribe.operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The name of every gateway object: Deployment, Service, ServiceAccount and its roles and bindings. */}}
{{- define "kubescribe.gateway.name" -}}
{{- printf "%s-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels of the gateway's objects and pods, which also select its pods. */}}
{{- define "kubescribe.gateway.labels" -}}
app.kubernetes.io/name: kubescribe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The allowed models that are names (not s3:// prefixes), as JSON: what the gateway offers. */}}
{{- define "kubescribe.modelNames" -}}
{{- $names := list -}}
{{- range .Values.models.allowed -}}
{{- if not (hasPrefix "s3://" .) -}}{{- $names = append $names . -}}{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The name of the storage policy: the ValidatingAdmissionPolicy and its binding. */}}
{{- define "kubescribe.storagePolicy.name" -}}
{{- printf "%s-storage" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Pod Security's `restricted` profile for the operator's and the gateway's pods, with a fixed non-root user. */}}
{{- define "kubescribe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* The containers' part of `restricted`, with a read-only root: they write only to their /tmp emptyDir. */}}
{{- define "kubescribe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
readOnlyRootFilesystem: true
{{- end -}}

{{/* Where a container with a read-only root writes: its home and temporary files go to the /tmp emptyDir. */}}
{{- define "kubescribe.writableEnv" -}}
- {name: HOME, value: /tmp}
- {name: TMPDIR, value: /tmp}
- {name: PYTHONDONTWRITEBYTECODE, value: "1"}
{{- end -}}

{{/* The labels of the chart's objects for runners (their NetworkPolicies). */}}
{{- define "kubescribe.runner.labels" -}}
app.kubernetes.io/name: kubescribe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: runner
{{- end -}}

{{/* The namespaces of jobs the chart knows of, as a JSON list: those it creates and the operator's. */}}
{{- define "kubescribe.runnerNamespaces" -}}
{{- concat .Values.tenantNamespaces .Values.operator.namespaces | uniq | toJson -}}
{{- end -}}

{{/* "true" when jobs go to Kueue: kueue.enabled, or with `auto` whether the cluster serves Kueue's Workloads. */}}
{{- define "kubescribe.kueue.enabled" -}}
{{- if eq (toString .Values.kueue.enabled) "auto" -}}
{{- .Capabilities.APIVersions.Has "kueue.x-k8s.io/v1beta2/Workload" -}}
{{- else -}}
{{- eq (toString .Values.kueue.enabled) "true" -}}
{{- end -}}
{{- end -}}

{{/* The names of a list of image pull secrets ([{name: ...}]), as a JSON list. */}}
{{- define "kubescribe.secretNames" -}}
{{- $names := list -}}
{{- range . -}}{{- $names = append $names .name -}}{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* A map of resource quantities as JSON, every quantity a string (YAML reads `1` as a number). */}}
{{- define "kubescribe.quantities" -}}
{{- $quantities := dict -}}
{{- range $name, $quantity := . -}}{{- $_ := set $quantities $name (toString $quantity) -}}{{- end -}}
{{- toJson $quantities -}}
{{- end -}}

{{/* The name of the pool workers' ServiceAccount, Role and RoleBinding. */}}
{{- define "kubescribe.worker.name" -}}
{{- printf "%s-worker" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of the operator's Role and RoleBinding for the pools, in the release namespace. */}}
{{- define "kubescribe.operator.poolsName" -}}
{{- printf "%s-operator-pools" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels of the chart's objects for pool workers. */}}
{{- define "kubescribe.worker.labels" -}}
app.kubernetes.io/name: kubescribe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{/* The name of the model cache's DaemonSet and Service. */}}
{{- define "kubescribe.modelCache.name" -}}
{{- printf "%s-model-cache" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels of the model cache's objects and pods, which also select its pods. */}}
{{- define "kubescribe.modelCache.labels" -}}
app.kubernetes.io/name: kubescribe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: model-cache
{{- end -}}

{{/* Where runner pods reach the model cache: modelCache.url, else the chart's Service. */}}
{{- define "kubescribe.modelCache.url" -}}
{{- if .Values.modelCache.url -}}
{{- .Values.modelCache.url -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "kubescribe.modelCache.name" .) .Release.Namespace .Values.modelCache.port -}}
{{- end -}}
{{- end -}}
