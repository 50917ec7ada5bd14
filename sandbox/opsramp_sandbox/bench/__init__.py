"""The performance benchmark (`make bench`): the operator against the sandbox, next to the floor."""
