# syntax=docker/dockerfile:1
#
# AutonomOS: one image, three modes. MODE=all (default) runs the API and the worker in one
# process; MODE=api and MODE=worker run one each, so they can be scaled separately against the
# same PostgreSQL.
#
#   docker build -t autonomos .
#   docker run -p 5000:5000 -e DATABASE_URL=postgres://... -e SECRET_KEY=... autonomos
#   docker run -e MODE=worker -e DATABASE_URL=postgres://... -e SECRET_KEY=... autonomos

ARG NODE_IMAGE=node:24-slim

# --- build: compile TypeScript to dist/ --------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY db ./db
COPY scripts ./scripts
# Emits dist/src/main/{api,worker,all}.js, dist/db/migrations and dist/scripts.
RUN npm run build

# --- deps: production dependencies only ----------------------------------------------------------
# A separate stage so the runtime image gets neither dev dependencies nor the npm cache.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# TypeScript is dragged in as valibot's optional peer dependency although nothing imports it at
# run time; removing it saves about 23 MB. embedded-postgres (the development default of `npm
# start` without DATABASE_URL) is a development dependency, so it is not installed here: the
# image runs with NODE_ENV=production, where DATABASE_URL is required and nothing embedded starts.
# test/faults/deploy.test.ts starts the compiled entrypoints without any development dependency.
RUN npm ci --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/typescript node_modules/.bin/tsc node_modules/.bin/tsserver

# --- runtime -------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# The heap the npm scripts give the service too (see SERVICE_NODE_FLAGS in scripts/lib/service-process.ts).
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-old-space-size=512 --max-semi-space-size=16" \
    PORT=5000 \
    MODE=all
WORKDIR /app
# Application files stay owned by root and read-only for the `node` user that runs them.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json carries "type": "module", which the compiled ESM files need.
COPY package.json ./
# Writable only so NODE_ENV=development can keep its generated secret in .data; production never writes here.
RUN mkdir .data && chown node:node .data
USER node
EXPOSE 5000

# Node runs as PID 1 (via exec) and handles SIGTERM itself: it stops taking work, lets running
# tasks finish and exits. Give it time with `docker stop -t 30`.
ENTRYPOINT ["/bin/sh", "-c", "case \"$MODE\" in api|worker|all) exec node \"dist/src/main/$MODE.js\" ;; *) echo \"autonomos: MODE must be api, worker or all (got '$MODE')\" >&2; exit 64 ;; esac"]

# MODE=api|all: GET /health/api (which pings the database) with Node's built-in fetch, as slim
# images have no curl. MODE=worker serves no HTTP, so it passes only while this container's
# worker heartbeat in the database is fresh (stuck event loop or lost database = unhealthy).
# See scripts/healthcheck.ts.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["node", "dist/scripts/healthcheck.js"]
