"""Constants shared by the OpsRamp contract tests and their fixtures."""

from __future__ import annotations

from collections.abc import Callable

from opsramp_aws_operator.opsramp import OpsRampTimeouts

OPSRAMP_ACCOUNT = "999988887777"
CUSTOMER_ACCOUNT = "123456789012"  # moto's default account
TENANT = "client_42"
CLIENT_ID = "contract-key"
CLIENT_SECRET = "contract-secret-" + "s" * 24

# Short everything, so retries and backoffs cost milliseconds.
FAST = OpsRampTimeouts(connect_seconds=2, read_seconds=5, backoff_base_seconds=0.01, backoff_max_seconds=0.05)

# make_role(principal=...) -> (role ARN, External ID)
RoleMaker = Callable[..., tuple[str, str]]
