# syntax=docker/dockerfile:1
#
# loginetl as a container: `loginetl run --follow` by default, any other command by argument.
#
#   docker build -t loginetl .
#   docker run --rm -e LOGINETL_MASK_KEY -e LOGINETL_QUEUE_URL -e LOGINETL_DATABASE_URL loginetl
#   docker run --rm -e LOGINETL_DATABASE_URL loginetl init-db
#
# Nothing secret is in the image: the mask key, database URL and AWS credentials come from the
# environment at run time (docker-compose.yml, or a Kubernetes Secret and IRSA, see
# deploy/kubernetes/). Only pyproject.toml, README.md, requirements/runtime.lock and loginetl/ are
# copied in (.dockerignore keeps .env, .venv, .loginetl-stack and .git out of the build context
# as well).

# --- build: loginetl and its runtime dependencies in a virtualenv --------------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Same path in both stages: a virtualenv's scripts name their interpreter by absolute path.
RUN python -m venv /opt/loginetl

WORKDIR /build
COPY requirements/runtime.lock ./requirements/
# The runtime dependencies at the exact versions the suite ran on, their hashes checked
# (requirements/runtime.lock, written by scripts/lock.sh; not [local]: moto and an embedded
# PostgreSQL, not [dev]: pytest and the linters); then loginetl itself, with nothing more to
# resolve. Each ships as a wheel (psycopg2-binary included), so no compiler is needed. pip
# compiles the bytecode here, so the read-only runtime never needs to write any.
RUN /opt/loginetl/bin/pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY loginetl ./loginetl
RUN /opt/loginetl/bin/pip install --no-deps . \
 && /opt/loginetl/bin/loginetl --help > /dev/null

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="loginetl" \
      org.opencontainers.image.description="SQS login events into PostgreSQL, PII masked"

# A fixed, numeric, unprivileged uid/gid: Kubernetes' runAsNonRoot can only verify a numeric
# USER, and the same uid everywhere keeps file ownership predictable.
RUN groupadd --system --gid 10001 loginetl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin loginetl

COPY --from=build /opt/loginetl /opt/loginetl

# Logs leave at once (no stdout buffering behind a pipe); nothing tries to write .pyc files.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/loginetl/bin:$PATH

# loginetl reads .env from its working directory: an empty folder the user cannot write to.
WORKDIR /app

USER 10001:10001

# Prometheus /metrics and /healthz, when run with --metrics-port 9100.
EXPOSE 9100

# Exec form: loginetl is PID 1 and gets SIGTERM itself; it stops receiving, finishes and commits
# the batch in hand, then exits 0. Give it longer than a batch before SIGKILL
# (stop_grace_period in compose, terminationGracePeriodSeconds in Kubernetes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["loginetl"]
CMD ["run", "--follow"]
