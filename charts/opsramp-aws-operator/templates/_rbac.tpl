{{/*
RBAC rules: exactly the verbs on exactly the resources the operator (and kopf under it) uses. Split in two so
that namespaced mode can grant the namespaced part per namespace and only the cluster-scoped reads cluster-wide.
*/}}

{{/* Rules on namespaced resources: a ClusterRole in cluster mode, a Role per watched namespace otherwise. */}}
{{- define "opsramp-aws-operator.rbac.namespacedRules" -}}
- apiGroups: ["integrations.opsramp.com"]
  resources: ["awsintegrations"]
  # patch: finalizers and kopf's progress annotations.
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["integrations.opsramp.com"]
  resources: ["awsintegrations/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  # Reads the OpsRamp credentials and External ID Secrets and watches only those labelled
  # integrations.opsramp.com/watch=true; creates the generated External ID Secret (garbage-collected with its
  # AWSIntegration, never deleted by the operator); patches a finalizer and that label onto referenced Secrets.
  verbs: ["get", "list", "watch", "create", "patch"]
# kopf posts core v1 Events only (never events.k8s.io).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
# kopf uses namespaced peering (KopfPeering in each namespace) when it watches a list of namespaces.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules on cluster-scoped resources: always a ClusterRole. */}}
{{- define "opsramp-aws-operator.rbac.clusterRules" -}}
# kopf scans CRDs to resolve the resources it serves.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf lists and watches namespaces only when it serves a list of them (all-namespaces mode never reads them).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
# kopf uses cluster-wide peering (ClusterKopfPeering) when it watches all namespaces.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
