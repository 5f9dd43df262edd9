# syntax=docker/dockerfile:1
# Multi-stage build of the Argo S3 artifact plugin.
# Node 24 is the active LTS line; the plugin supports Node >= 22. NODE_VERSION is
# tools/versions.env's NODE_IMAGE_VERSION, the Node the tests also run on
# (the packaging test holds the two equal).
ARG NODE_VERSION=24.22.3

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY scripts/bundle.mjs ./scripts/
COPY proto ./proto
COPY src ./src
# tsc, then esbuild: dist/main.cjs (the plugin) and dist/cli.cjs (the command line
# client), each one file with every dependency (scripts/bundle.mjs).
RUN npm run build

# The entrypoint: a static launcher that binds the plugin's socket within a few
# milliseconds and hands it to Node (launcher/launch.c), so that argoexec finds
# the socket at its first look instead of a second later.
FROM gcc:12-bookworm AS launcher
WORKDIR /src
COPY launcher/launch.c ./
RUN gcc -O2 -Wall -Wextra -Werror -static -s -o /launch launch.c

# The one dependency the bundle cannot hold: @node-rs/crc32's native binary.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
# The release, as package.json says (the packaging test holds them equal).
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="argo-s3-artifact-plugin" \
      org.opencontainers.image.description="Argo Workflows artifact driver plugin for S3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# A fixed mmap threshold: glibc otherwise raises it to the largest block freed,
# after which the multi-MiB transfer buffers and gRPC messages come from its
# heaps and stay there when freed, so an idle plugin kept its peak memory.
# Measured with `npm run bench:load` (README, "Reliability"); no throughput cost.
ENV MALLOC_MMAP_THRESHOLD_=131072
# V8's compiled code for the bundle, made once here and read by every start
# (about a fifth of the start-up; docs/performance.md). Node reads it without
# writing when the folder is read-only, as it is to the image's user.
ENV NODE_COMPILE_CACHE=/app/.compile-cache
WORKDIR /app
COPY --from=deps /app/node_modules/@node-rs ./node_modules/@node-rs
COPY --from=build /src/dist/main.cjs ./dist/
COPY --from=build /src/dist/main.cjs.LEGAL.txt ./dist/
COPY --from=build /src/dist/cli.cjs ./dist/
COPY --from=build /src/dist/cli.cjs.LEGAL.txt ./dist/
COPY --from=build /src/dist/vendor ./dist/vendor
COPY --from=build /src/dist/probe.js ./dist/
COPY --from=launcher /launch ./launch
COPY proto ./proto
COPY package.json ./
RUN node dist/main.cjs --version && chmod -R a+rX .compile-cache
# /tmp must exist and be writable by the container user (Argo loads artifacts there).
RUN chmod 1777 /tmp
# Argo's executor uid (the argoexec and argocli images' user), by number:
# Kubernetes can only check runAsNonRoot (set by Argo's argo-server pod without
# runAsUser) against a numeric USER. The same uid as the executor because in
# v4.1's init-less layout Argo's supervisor chmods the files the plugin loaded,
# which only their owner may do.
USER 8737:8737
# The launcher execs Node in its own place (same PID), which handles SIGTERM
# (graceful drain, exit 0). Argo appends the socket path as the only argument.
ENTRYPOINT ["/app/launch", "/usr/local/bin/node", "/app/dist/main.cjs"]
