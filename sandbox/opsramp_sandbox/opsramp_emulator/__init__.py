"""Internals of the OpsRamp API emulator; use `opsramp_sandbox.opsramp.OpsRampEmulator` from outside."""
