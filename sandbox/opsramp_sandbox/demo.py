"""`make demo`: bring the sandbox up, apply the example, watch it reach Ready, show the result, tear down."""

from __future__ import annotations

PLAN = """\
make demo will, once the operator is in place:
  1. start the local sandbox: a Kubernetes API emulator with the AWSIntegration CRD, moto's IAM/STS
     server and the OpsRamp API emulator, all on 127.0.0.1;
  2. start the operator against it;
  3. apply examples/secret.yaml and examples/awsintegration.yaml;
  4. show the resource's conditions until Ready=True;
  5. print the IAM role's trust policy as IAM returns it and the integration as OpsRamp's API returns it;
  6. tear everything down.
The operator is not wired in yet, so nothing is started."""


def main() -> int:
    print(PLAN)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
