# syntax=docker/dockerfile:1
# The timeline service: build with every dependency, run with production ones only.

# Node 24 LTS (Node 20 left maintenance in April 2026); the code itself runs on Node 20 or newer
# (package.json "engines"), which is what CI machines may have.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first, so the dependency layer is rebuilt only when they change. The client SDK
# is an npm workspace: npm ci needs its package.json too.
COPY package.json package-lock.json ./
COPY client-sdk/package.json client-sdk/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY server server
COPY client-sdk client-sdk
COPY demo demo
# dist/server (the service), dist/client-sdk (the SDK modules the server imports) and
# dist/demo (the page served at /, with the SDK bundled in); also client-sdk/dist.
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY client-sdk/package.json client-sdk/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# Everything the service reads at run time is under dist/.
COPY --from=build /app/dist dist
# The image's unprivileged user; the code stays owned by root, so the service cannot change it.
USER node
ENV PORT=3000
EXPOSE 3000
# Liveness only: the image also runs without Redis (in-memory bus). docker-compose.yml
# checks readiness (/readyz: Redis reachable) instead. Node has fetch; the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1: main.ts handles SIGTERM (graceful shutdown), no shell in between.
CMD ["node", "dist/server/main.js"]
