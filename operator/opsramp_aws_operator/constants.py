"""Names shared by the CRD, the handlers and the adapters: one place so they cannot disagree."""

from typing import Final

GROUP: Final = "integrations.opsramp.com"
VERSION: Final = "v1alpha1"
KIND: Final = "AWSIntegration"
PLURAL: Final = "awsintegrations"
SINGULAR: Final = "awsintegration"
SHORT_NAMES: Final = ("awsint",)
CATEGORIES: Final = ("opsramp",)
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Our finalizer and the prefix for everything kopf stores in annotations.
FINALIZER: Final = f"{GROUP}/cleanup"
ANNOTATION_PREFIX: Final = GROUP
# Set this annotation to "true" to let the finalizer go without external cleanup
# (for when cleanup can never succeed, e.g. the AWS account is gone).
SKIP_CLEANUP_ANNOTATION: Final = f"{GROUP}/skip-cleanup"
# Set this annotation to a new value (a date, a ticket) to rotate the External ID: a generated one is replaced by a
# new one; either way a rotation that was rolled back is tried again (docs/lifecycle.md).
ROTATE_ANNOTATION: Final = f"{GROUP}/rotate-external-id"

# Ownership tags on everything the operator creates in IAM.
TAG_PREFIX: Final = "opsramp.com/"
TAG_OWNER_UID: Final = f"{TAG_PREFIX}owner-uid"
TAG_OWNER_NAMESPACE: Final = f"{TAG_PREFIX}owner-namespace"
TAG_OWNER_NAME: Final = f"{TAG_PREFIX}owner-name"
TAG_MANAGED_BY: Final = f"{TAG_PREFIX}managed-by"
MANAGED_BY_VALUE: Final = "opsramp-aws-operator"

DEFAULT_ROLE_PATH: Final = "/opsramp/"

# The operator watches only the Secrets carrying this label: the External ID Secrets it generates, and the Secrets
# resources reference (it adds the label when it first reads one; add it yourself to a Secret you create after the
# resource that uses it, for the operator to see it at once instead of at the resource's next retry).
SECRET_WATCH_LABEL: Final = f"{GROUP}/watch"
