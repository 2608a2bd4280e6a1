# The node image: the single hookmeter binary (npm run build) on Debian 12 with libbpf 1.1.
# Build the binary first: npm ci && npm run build
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY dist/hookmeter /usr/local/bin/hookmeter
ENV HOOKMETER_DATA_DIR=/var/lib/hookmeter HOOKMETER_LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/hookmeter"]
CMD ["serve", "--address", "0.0.0.0", "--token-file", "/etc/hookmeter/token"]
