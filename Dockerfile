# syntax=docker/dockerfile:1
# The opsramp-aws-operator image: the operator's wheel and its runtime dependencies (pinned by constraints.txt)
# on a slim Python, run as a non-root numeric user. Build: docker build -t opsramp-aws-operator .

# Pinned tag (bump deliberately); pin the digest too when your registry mirror allows it.
# checkov:skip=CKV_DOCKER_7: the FROM lines use ${PYTHON_IMAGE}, which checkov cannot resolve; the ARG below pins a version tag
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie

# ---- build: wheels for the operator and every runtime dependency -----------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml constraints.txt constraints-build.txt README.md ./
# Only the operator's source root: the sandbox (emulators, moto) never enters the image.
COPY operator/ operator/
# No extras: [sandbox] and [test] stay out. constraints.txt pins every transitive runtime dependency. pip and
# the build backend (setuptools) come hash-checked from constraints-build.txt, and the wheel is built with them
# (no build isolation, so no unpinned setuptools is fetched).
RUN pip install --require-hashes -r constraints-build.txt \
    && pip wheel --no-build-isolation --wheel-dir /wheels --constraint constraints.txt .

# ---- runtime: no compilers, no build tools, no pip in the operator's venv --------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/operator \
    PATH=/opt/operator/bin:$PATH
# Install from the build stage's wheels only (--no-index): what was resolved there is what runs here.
# The wheels are bind-mounted, so they never land in a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/operator \
    && python -m pip --python /opt/operator/bin/python install --no-index --find-links=/wheels opsramp-aws-operator
# 65532 is the conventional "nonroot" id (distroless); numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
# Kubernetes uses the chart's livenessProbe; this serves plain `docker run`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OPERATOR_HEALTH_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["opsramp-aws-operator"]
