# sipmask in a container: `docker build -t sipmask . && docker run --network host sipmask`
# (host networking keeps SIP and RTP addresses honest; with -p, publish 5060/udp and 5060/tcp and
# set SIPMASK_LISTEN to the container address). Mount a volume on /data for the pairing store
# and its key, and a config file with -e SIPMASK_CONFIG=/data/sipmask.toml.

# Stage 1: the wheel (package data included: the default rules, the SIPp scenarios).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY proxy ./proxy
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --no-deps -w /wheels . \
 && pip wheel --no-cache-dir -c constraints.txt -w /wheels /wheels/sipmask-*.whl

# Stage 2: only the wheels, installed with the pinned versions; runs as a non-root user.
FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --no-index --find-links /wheels -c /tmp/constraints.txt sipmask \
 && rm -rf /wheels /tmp/constraints.txt \
 && useradd --system --home-dir /data --create-home sipmask

USER sipmask
WORKDIR /data
ENV SIPMASK_LISTEN="udp:0.0.0.0:5060,tcp:0.0.0.0:5060" \
    SIPMASK_STORE_PATH=/data/sipmask.db \
    SIPMASK_LOG_FORMAT=json
EXPOSE 5060/udp 5060/tcp 8080/tcp
VOLUME ["/data"]
# /healthz of the management API (api.listen, 127.0.0.1:8080 by default)
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT ["sipmask"]
CMD ["run"]
