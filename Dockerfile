# shardsnap node image: Node 20 on Debian bookworm with the system librocksdb.
FROM node:20-bookworm-slim AS build
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

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends librocksdb7.8 rocksdb-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/proto ./proto
COPY --from=build /app/bin ./bin
COPY --from=build /app/native/build/Release/shardsnap_rocksdb.node ./native/build/Release/
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 7420
ENTRYPOINT ["./bin/shardsnap"]
CMD ["serve", "--listen", "0.0.0.0:7420", "--data-dir", "/data"]
