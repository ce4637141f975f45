# shardsnap node image: Node 20 on Debian bookworm with the system librocksdb.
# The base is pinned by version and digest; the runtime runs as the unprivileged `node`
# user (uid 1000), which owns /data and the secrets the compose nodes read.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 librocksdb-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Native dependencies compile from source against the image's Node headers.
RUN npm_config_build_from_source=true npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY native ./native
COPY src ./src
COPY bin ./bin
RUN npm run build:native \
 && npm run gen \
 && npx tsc -p tsconfig.json \
 && npm prune --omit=dev

FROM ${NODE_IMAGE}
# openssl: the compose setup generates its CA, certificates and tokens with this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 rocksdb-tools openssl \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/proto ./proto
COPY --from=build /app/bin ./bin
COPY --from=build /app/native/build/Release/shardsnap_rocksdb.node \
     /app/native/build/Release/shardsnap_segments.node ./native/build/Release/
RUN install -d -o node -g node -m 0750 /data
USER 1000:1000
VOLUME ["/data"]
EXPOSE 7420 9464
ENTRYPOINT ["./bin/shardsnap"]
CMD ["serve", "--listen", "0.0.0.0:7420", "--data-dir", "/data"]
