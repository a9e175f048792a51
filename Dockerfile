# sipmask in a container: `docker build -t sipmask . && docker run --network host sipmask`
# (host networking keeps SIP and RTP addresses honest; with -p, publish 5060/udp and 5060/tcp and
# set SIPMASK_LISTEN to the container address). Mount a volume on /data for the pairing store
# and its key, and a config file with -e SIPMASK_CONFIG=/data/sipmask.toml.
FROM python:3.11-slim-bookworm

RUN useradd --system --home-dir /data --create-home sipmask
WORKDIR /opt/sipmask
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY loadtest ./loadtest
COPY rules ./rules
RUN pip install --no-cache-dir .

USER sipmask
WORKDIR /data
ENV SIPMASK_LISTEN="udp:0.0.0.0:5060,tcp:0.0.0.0:5060" \
    SIPMASK_STORE_PATH=/data/sipmask.db \
    SIPMASK_LOG_FORMAT=json
EXPOSE 5060/udp 5060/tcp
VOLUME ["/data"]
ENTRYPOINT ["sipmask"]
CMD ["run"]
