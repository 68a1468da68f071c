{{/* The image of the operator and the gateway, and of the runner unless runner.image names another. */}}
{{- define "kubescribe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
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
