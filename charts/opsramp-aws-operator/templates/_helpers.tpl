{{/* Naming and labels follow the `helm create` scaffold. */}}

{{- define "opsramp-aws-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "opsramp-aws-operator.fullname" -}}
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

{{- define "opsramp-aws-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "opsramp-aws-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opsramp-aws-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "opsramp-aws-operator.labels" -}}
helm.sh/chart: {{ include "opsramp-aws-operator.chart" . }}
{{ include "opsramp-aws-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: opsramp
{{- end }}

{{- define "opsramp-aws-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsramp-aws-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "opsramp-aws-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The kopf peering object name, or "" when peering is off (the operator then runs standalone). */}}
{{- define "opsramp-aws-operator.peeringName" -}}
{{- if .Values.peering.enabled }}
{{- default (include "opsramp-aws-operator.fullname" .) .Values.peering.name }}
{{- end }}
{{- end }}

{{/* A shard's peering object name: peering happens inside each shard (its replicas), never across shards. */}}
{{- define "opsramp-aws-operator.shardPeeringName" -}}
{{- $name := include "opsramp-aws-operator.peeringName" .root }}
{{- if and $name .shard.name }}
{{- printf "%s-%s" $name .shard.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name }}
{{- end }}
{{- end }}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "opsramp-aws-operator.validate" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs the namespaces to grant access in: set watchNamespaces" }}
{{- end }}
{{- $names := list }}
{{- range .Values.shards }}
{{- if has .name $names }}
{{- fail (printf "shards: the name %q is used twice" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}

{{/* An IAM ArnLike-style pattern (`*`, `?`) as an anchored RE2 regex; guardrails.glob_regex does the same in Python. */}}
{{- define "opsramp-aws-operator.globRegex" -}}
{{- printf "^%s$" (regexQuoteMeta .) | replace "\\*" ".*" | replace "\\?" "." -}}
{{- end }}

{{/* A namespace target entry as a regex: `default`, an account id (any role in it) or an ARN pattern. */}}
{{- define "opsramp-aws-operator.targetRegex" -}}
{{- if eq . "default" -}}
^default$
{{- else if regexMatch "^[0-9]{12}$" . -}}
{{- printf "^arn:aws(-[a-z]+)*:iam::%s:role/.*$" . -}}
{{- else -}}
{{- include "opsramp-aws-operator.globRegex" . -}}
{{- end -}}
{{- end }}
