"""OpsRamp REST adapter: the only code that imports `requests`. Its parts:

- `wire`: the wire contract — every detail OpsRamp's docs leave open (`WireFormat`), and pure encoding and
  decoding; docs/opsramp-api-assumptions.md lists the same items as a checklist for a live tenant.
- `auth`: OAuth2 client-credentials tokens, one per (endpoint, API client).
- `transport`: connection pools, per-tenant rate limits, retries and error classification into our two error
  kinds, with messages that never carry a secret.
- `inventory`: the shared listing that display-name lookups use.
- `client`: the AWS integration API (`OpsRampClient`, `get_client`) and what it learns per tenant (`Dialect`).
- `discovery`: discovery profiles, what OpsRamp discovers and manages through an integration.
- `activity`: OpsRamp's own role-check verdicts (integrations/activity), read through one shared feed per tenant.
"""

from .activity import ActivityFeed, Verdict
from .client import OpsRampClient, _reset_caches_for_tests, dialect_for, get_client
from .discovery import DiscoveryRequest, belongs_to, profile_body, profile_differences
from .inventory import Inventory
from .transport import MaybeAbsent, OpsRampLimits, OpsRampTimeouts
from .wire import (
    AwsIntegrationRequest,
    Dialect,
    InstalledIntegration,
    Scrubber,
    WireFormat,
    decode_regions,
    encode_regions,
    error_text,
    install_body,
    parse_integration,
    server_wait_seconds,
    strip_secrets,
)

__all__ = [
    "ActivityFeed",
    "AwsIntegrationRequest",
    "Dialect",
    "DiscoveryRequest",
    "InstalledIntegration",
    "Inventory",
    "MaybeAbsent",
    "OpsRampClient",
    "OpsRampLimits",
    "OpsRampTimeouts",
    "Scrubber",
    "Verdict",
    "WireFormat",
    "_reset_caches_for_tests",
    "belongs_to",
    "decode_regions",
    "dialect_for",
    "encode_regions",
    "error_text",
    "get_client",
    "install_body",
    "parse_integration",
    "profile_body",
    "profile_differences",
    "server_wait_seconds",
    "strip_secrets",
]
