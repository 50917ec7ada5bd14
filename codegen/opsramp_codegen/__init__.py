"""Build-time generators (run by `make crds`), kept apart from the runtime package and out of the image.

- `crdgen`: the CRD in crds/ from the pydantic models.
- `refdoc`: docs/reference.md from the CRD.
- `iam_permissions`: the operator's own IAM policy from the AWS calls its adapter makes.
"""
