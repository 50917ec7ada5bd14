"""`python -m opsramp_aws_operator` runs the operator."""

from .main import main

raise SystemExit(main())
