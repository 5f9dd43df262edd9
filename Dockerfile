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
COPY proto ./proto
COPY src ./src
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:${NODE_VERSION}-bookworm-slim
# The release, as package.json says (the packaging test holds them equal).
ARG VERSION=0.1.0
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
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY proto ./proto
COPY package.json ./
# /tmp must exist and be writable by the container user (Argo loads artifacts there).
RUN chmod 1777 /tmp
# The image's built-in unprivileged user "node", by number: Kubernetes can only
# check runAsNonRoot (set by Argo's argo-server pod without runAsUser) against
# a numeric USER, and refuses to start the container otherwise.
USER 1000:1000
# Node itself is PID 1 and handles SIGTERM (graceful drain, exit 0).
# Argo appends the socket path as the only argument.
ENTRYPOINT ["node", "/app/dist/main.js"]
