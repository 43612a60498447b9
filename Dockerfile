# syntax=docker/dockerfile:1
# One image per service, all from this file. Build from the repository root:
#   docker build --build-arg SERVICE=edge -t xdsbus-edge .
# SERVICE is one of builder, edge, watch-file, watch-k8s, watch-nacos, watch-consul, watch-eureka,
# console (the package under services/<SERVICE>), or dev: the echo backend of libs/xdsbus-dev, for the
# compose demo.
# Only the dev image holds xdsbus-dev; the build fails if a service image would.
ARG SERVICE=builder

FROM python:3.11-slim AS build
ARG SERVICE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# grpcio-tools compiles the project's protos; it stays in this stage.
RUN pip install "grpcio-tools>=1.85"
COPY protos protos
COPY libs libs
COPY services services
# Generate the ledger record classes before installing libs/xdsbus so the wheel includes them (what
# `make protos` does).
RUN find protos -name '*.proto' -exec python -m grpc_tools.protoc -Iprotos \
        --python_out=libs/xdsbus/src --pyi_out=libs/xdsbus/src {} +
ENV PATH=/opt/venv/bin:$PATH
# Install the core library and the one package SERVICE names, then check that its command starts
# (`--help` imports all of it) and, for a service, that no development package came along.
RUN case "$SERVICE" in \
        dev) package=libs/xdsbus-dev; set -- python -m xdsbus_dev.echo ;; \
        builder|edge|watch-file|watch-k8s|watch-nacos|watch-consul|watch-eureka|console) \
            package="services/$SERVICE"; set -- "xdsbus-$SERVICE" ;; \
        *) echo "unknown SERVICE '$SERVICE'" >&2; exit 2 ;; \
    esac \
    && python -m venv /opt/venv \
    && pip install ./libs/xdsbus "./$package" \
    && python -c "import xdsbus.proto.ledger.v1.ledger_pb2" \
    && "$@" --help > /dev/null \
    && if [ "$SERVICE" != dev ]; then \
        python -c "import importlib.util as u, sys; sys.exit(u.find_spec('xdsbus_dev') is not None)"; \
    fi

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 xdsbus \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin xdsbus
COPY --from=build /opt/venv /opt/venv
# Every service needs the NATS URL (XDSBUS_NATS_URL). Those that read or write Secret events (the builder,
# the watchers) need the secret key from XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE and exit with an
# error without it rather than invent one.
USER 10001:10001

# What differs per service: the command, and for some a port or a default directory.
FROM runtime AS builder
ENTRYPOINT ["xdsbus-builder"]

FROM runtime AS edge
# xDS (gRPC) and HTTP (/metrics, /debug/*, /ready).
EXPOSE 18000 15014
ENTRYPOINT ["xdsbus-edge"]

FROM runtime AS watch-file
# Mount the manifests here (read-only is enough).
ENV XDSBUS_WATCH_DIR=/config
ENTRYPOINT ["xdsbus-watch-file"]

FROM runtime AS watch-k8s
# In a pod it uses the service account (mount its token); elsewhere give --kubeconfig or KUBECONFIG.
ENTRYPOINT ["xdsbus-watch-k8s"]

# The registry watchers take which registries to watch from the McpBridge in the event log, not from
# flags, and open the Secrets its authSecretName fields name with the secret key.
FROM runtime AS watch-nacos
# The Nacos client's cache and log files go to a private directory under $TMPDIR per connection (the image
# has no home directory), removed when the connection closes.
ENTRYPOINT ["xdsbus-watch-nacos"]

FROM runtime AS watch-consul
# CONSUL_HTTP_TOKEN, if set, is the ACL token for registries whose McpBridge entry names none.
ENTRYPOINT ["xdsbus-watch-consul"]

FROM runtime AS watch-eureka
ENTRYPOINT ["xdsbus-watch-eureka"]

FROM runtime AS console
# The read-only web console (docs/console.md) with the reader's NATS credentials; it listens on loopback
# unless XDSBUS_CONSOLE_LISTEN says otherwise. Pages and API, then /metrics and /ready.
ENV XDSBUS_CONSOLE_LISTEN=0.0.0.0:15040
EXPOSE 15040 15036
ENTRYPOINT ["xdsbus-console"]

FROM runtime AS dev
# `docker run IMAGE --port 18081 --pod echo-a-1 --service echo-a`; binds 127.0.0.1 unless
# XDSBUS_ECHO_HOST says otherwise (compose shares Envoy's network namespace).
ENTRYPOINT ["python", "-m", "xdsbus_dev.echo"]

# The image: the stage SERVICE names.
FROM ${SERVICE}
