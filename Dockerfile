# npsd and npsctl on Debian 12, for docker-compose.yml (production-like runs
# against real Apache Kafka and Redis).
#
#   docker build -t npsd:local .
#   docker run --rm npsd:local --check-config
#
# Configuration comes from NPSD_* environment variables (see README.md):
# NPSD_KAFKA_BOOTSTRAP_SERVERS, NPSD_REDIS_HOST, NPSD_HTTP_LISTEN, ...

# ---- build stage -------------------------------------------------------------
FROM debian:12-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        librdkafka-dev libjansson-dev libhiredis-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY include/ include/
COPY src/ src/
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNPSD_TESTS=OFF \
 && cmake --build build -j"$(nproc)" \
 && strip --strip-debug build/npsd build/npsctl

# ---- runtime stage -----------------------------------------------------------
FROM debian:12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        librdkafka1 libjansson4 libhiredis0.14 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin npsd

COPY --from=build /src/build/npsd /src/build/npsctl /usr/local/bin/
# Reference copies: npsd reads config/npsd.conf only when it exists in the
# working directory (/var/lib/npsd has none), so the environment rules.
COPY config/npsd.conf config/themes.conf /usr/share/doc/npsd/

WORKDIR /var/lib/npsd
USER npsd:npsd
# http.listen must not be loopback inside a container
ENV NPSD_HTTP_LISTEN=0.0.0.0:9464
EXPOSE 9464

# /healthz without curl: bash's /dev/tcp; healthy only on "200".
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# SIGTERM finishes the batch in hand, commits and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["npsd"]
