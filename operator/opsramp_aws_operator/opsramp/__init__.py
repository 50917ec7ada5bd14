"""OpsRamp REST adapter: the only code that imports `requests`. Its parts:

- `wire`: the wire contract — every detail OpsRamp's docs leave open (`WireFormat`), and pure encoding and
  decoding; docs/opsramp-api-assumptions.md lists the same items as a checklist for a live tenant.
- `auth`: OAuth2 client-credentials tokens, one per (endpoint, API client).
- `transport`: connection pools, per-tenant rate limits, retries and error classification into our two error
  kinds, with messages that never carry a secret.
- `inventory`: the shared listing that display-name lookups use.
- `client`: the AWS integration API (`OpsRampClient`, `get_client`).
"""

from .client import OpsRampClient, _reset_caches_for_tests, get_client
from .inventory import Inventory
from .transport import OpsRampLimits, OpsRampTimeouts
from .wire import (
    AwsIntegrationRequest,
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
    "AwsIntegrationRequest",
    "InstalledIntegration",
    "Inventory",
    "OpsRampClient",
    "OpsRampLimits",
    "OpsRampTimeouts",
    "Scrubber",
    "WireFormat",
    "_reset_caches_for_tests",
    "decode_regions",
    "encode_regions",
    "error_text",
    "get_client",
    "install_body",
    "parse_integration",
    "server_wait_seconds",
    "strip_secrets",
]
