"""Kubernetes operator that reconciles AWSIntegration resources into an IAM role and an OpsRamp integration."""

__version__ = "0.1.0"
