"""The local world for tests and the demo: Kubernetes and OpsRamp API emulators, moto, and a launcher."""
