# npsd and npsctl on Debian 12, for docker-compose.yml (production-like runs
# against real Apache Kafka and Redis).
#
#   docker build -t npsd:local .
#   docker run --rm npsd:local --check-config
#
# Configuration: /etc/npsd/npsd.conf in the image, overridden by NPSD_*
# environment variables (see README.md): NPSD_KAFKA_BOOTSTRAP_SERVERS,
# NPSD_REDIS_HOST, NPSD_HTTP_LISTEN, ...

# ---- build stage -------------------------------------------------------------
FROM debian:12-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        librdkafka-dev libjansson-dev libhiredis-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt README.md ./
COPY cmake/ cmake/
COPY include/ include/
COPY src/ src/
COPY config/ config/
COPY deploy/ deploy/
COPY docs/ docs/
# cmake --install: the binaries (stripped), man pages, docs, the unit and
# /etc/npsd (configuration and lexicon), staged in /out for the next stage.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNPSD_TESTS=OFF \
        -DCMAKE_INSTALL_PREFIX=/usr/local \
 && cmake --build build -j"$(nproc)" \
 && DESTDIR=/out cmake --install build --strip

# ---- runtime stage -----------------------------------------------------------
FROM debian:12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        librdkafka1 libjansson4 libhiredis0.14 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin npsd

COPY --from=build /out/ /
# npsd finds /etc/npsd/npsd.conf (the annotated defaults, themes.file set to
# /etc/npsd/themes.conf) because /var/lib/npsd holds no config/npsd.conf;
# the NPSD_* environment overrides it.

WORKDIR /var/lib/npsd
USER npsd:npsd
# http.listen must not be loopback inside a container
ENV NPSD_HTTP_LISTEN=0.0.0.0:9464
EXPOSE 9464

# Readiness: /readyz is 200 while Kafka and Redis are reachable. Docker and
# docker compose only report "unhealthy", they never restart on it. Where an
# orchestrator restarts unhealthy containers (Swarm, a Kubernetes
# livenessProbe), probe /livez for that instead: npsd waits out a Redis or
# Kafka outage by itself. Without curl: bash's /dev/tcp; healthy only on 200.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM finishes the batch in hand, commits and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["npsd"]
