{{/* Chart name, overridable. */}}
{{- define "llm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the release's objects. A release called "llm-operator" gives
"llm-operator", not "llm-operator-llm-operator".
*/}}
{{- define "llm-operator.fullname" -}}
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

{{- define "llm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "llm-operator.labels" -}}
helm.sh/chart: {{ include "llm-operator.chart" . }}
{{ include "llm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-operator
{{- end }}

{{/* Labels that select the operator pod: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "llm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "llm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The namespaced rules: exactly the API calls of operator/llm_operator/k8s and handlers/, nothing more.
Used by the ClusterRole (cluster-wide mode) and by the Role in each watched namespace
(listed-namespaces mode), so both modes grant the same verbs.
*/}}
{{- define "llm-operator.namespacedRules" -}}
# LLMDeployments: kopf lists and watches them; every reconcile GETs the current object.
# No update/patch: the operator never writes the user's spec or metadata (GitOps tools own them).
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments"]
  verbs: ["get", "list", "watch"]
# Status is written by server-side apply (a PATCH of the status subresource), nothing else.
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments/status"]
  verbs: ["patch"]
# Children carry an owner reference with blockOwnerDeletion: true. Where the admission plugin
# OwnerReferencesPermissionEnforcement is on (OpenShift's default), setting that needs "update" on
# the owner's finalizers subresource. The operator never writes finalizers.
- apiGroups: ["llmops.dev"]
  resources: ["llmdeployments/finalizers"]
  verbs: ["update"]
# The Deployments the operator owns: watched (label selector) and listed by label on reconcile;
# written with server-side apply, which is a PATCH that also needs "create" when the object does
# not exist yet (the API server authorizes that PATCH as a create); deleted when a role is removed
# from the spec. "get" by name only before creating one: an object of that name the operator did
# not make is reported as a NameConflict and never taken over.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The Services (one per role) and the shared weights cache claim: same lifecycle as Deployments.
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The NetworkPolicy of spec.service.allowedNamespaces: same lifecycle. Granting it lets the operator
# restrict ingress to the pods it runs, and through a spec a namespace's users could write one.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# KEDA's ScaledObjects of roles with autoscaling provider KEDA: same lifecycle. Where KEDA is not
# installed the rule grants nothing, and the operator reports those roles as AutoscalerNotInstalled.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods are only observed: their states (pulling, crash-looping, unschedulable) become status.
# An LLMGateway's routers get the same two verbs on pods through a Role the operator writes, which
# Kubernetes allows only to a holder of them.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# LLMGateways: as LLMDeployments (watched, status by server-side apply, owner of its children).
- apiGroups: ["llmops.dev"]
  resources: ["llmgateways"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["llmops.dev"]
  resources: ["llmgateways/status"]
  verbs: ["patch"]
- apiGroups: ["llmops.dev"]
  resources: ["llmgateways/finalizers"]
  verbs: ["update"]
# LLMBatches: as LLMDeployments (watched, status by server-side apply, owner of its Job).
- apiGroups: ["llmops.dev"]
  resources: ["llmbatches"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["llmops.dev"]
  resources: ["llmbatches/status"]
  verbs: ["patch"]
- apiGroups: ["llmops.dev"]
  resources: ["llmbatches/finalizers"]
  verbs: ["update"]
# An LLMBatch's Job: watched (label selector), created by server-side apply, "get" by name only to
# refuse taking over a Job of that name the operator did not make. Never changed after creation (a
# Job's pod template is immutable) and never deleted (the garbage collector follows the owner reference).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- if .Values.operator.readPodLogs }}
# Only with operator.readPodLogs (Kubernetes cannot narrow pods/log to some pods): the last lines
# of a running batch pod's log, every 10 s, its progress; and the first bytes of a model's engine
# log once per start, whether it reused compiled files. Neither holds requests or answers.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
# A gateway's configuration, its routers' ServiceAccount, and their Role and RoleBinding (pods,
# list and watch, in the gateway's namespace): read by name, written by server-side apply. Never
# listed or watched, never deleted (the garbage collector follows the owner reference).
- apiGroups: [""]
  resources: ["configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
# No Secrets at all: a missing one shows in the pod's CreateContainerConfigError, which names it,
# or, for a Secret volume of a gateway pod, in the kubelet's FailedMount Events of that pod (listed
# by field selector, only while such a pod waits for its volumes).
# The operator's own Events on phase transitions (kopf's event posting is disabled).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}

{{/*
Not granted in either mode: namespaces and customresourcedefinitions. The operator turns kopf's
scanning off (settings.scanning.disabled): it finds the LLMDeployment API by discovery at start,
takes the listed namespaces as they are, and exits with a clear message if the CRD is not served
within a minute, so the pod restarts once the CRD exists.
*/}}
