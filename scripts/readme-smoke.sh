#!/usr/bin/env bash
# Runs README's two set-up commands exactly as a newcomer would, in a clean clone: `npm install`
# then `npm start` (API + worker on an embedded PostgreSQL, no DATABASE_URL), checks that the
# service answers and runs a task end to end, then stops it with SIGINT and expects a clean exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d /tmp/autonomos-readme-XXXXXX)"
# Traversable by the "postgres" OS user, which runs the embedded server when we are root.
chmod 755 "$work"
log="$work/service.log"
pid=""

cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/autonomos"
cd "$work/autonomos"
unset DATABASE_URL SECRET_KEY JWT_SECRET_KEY NODE_ENV PORT

echo "readme-smoke: npm install"
npm install --no-audit --no-fund >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }

echo "readme-smoke: npm start"
setsid npm start >"$log" 2>&1 &
pid=$!

base="http://127.0.0.1:5000"
for _ in $(seq 1 120); do
  curl -fsS "$base/health/api" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { echo "readme-smoke: npm start exited early"; cat "$log"; exit 1; }
  sleep 0.5
done
curl -fsS "$base/health/api" >/dev/null || { echo "readme-smoke: no /health/api"; cat "$log"; exit 1; }
curl -fsS "$base/health/worker" >/dev/null || { echo "readme-smoke: no worker"; cat "$log"; exit 1; }

json='Content-Type: application/json'
curl -fsS -X POST "$base/api/v1/auth/register" -H "$json" \
  -d '{"name":"Smoke Co","email":"smoke@example.com","password":"smoke-test-1"}' >/dev/null
token="$(curl -fsS -X POST "$base/api/v1/auth/login" -H "$json" \
  -d '{"email":"smoke@example.com","password":"smoke-test-1"}' | node -e 'process.stdin.on("data",d=>process.stdout.write(JSON.parse(d).access_token))')"
curl -fsS "$base/api/v1/auth/me" -H "Authorization: Bearer $token" >/dev/null
# No SLACK_WEBHOOK_URL here: the task runs and fails with a clear error, which proves the worker ran it.
task="$(curl -fsS -X POST "$base/api/v1/tasks" -H "$json" -H "Authorization: Bearer $token" \
  -d '{"payload":{"action":"post_to_slack","channel":"#smoke","message":"hello"}}' | node -e 'process.stdin.on("data",d=>process.stdout.write(JSON.parse(d).id))')"
for _ in $(seq 1 100); do
  status="$(curl -fsS "$base/api/v1/tasks/$task" -H "Authorization: Bearer $token" | node -e 'process.stdin.on("data",d=>process.stdout.write(JSON.parse(d).status))')"
  [[ "$status" == "failed" || "$status" == "success" ]] && break
  sleep 0.1
done
[[ "$status" == "failed" ]] || { echo "readme-smoke: task ended '$status', expected failed (no Slack configured)"; cat "$log"; exit 1; }

echo "readme-smoke: Ctrl-C"
kill -INT -- "-$pid"
for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$pid" 2>/dev/null; then echo "readme-smoke: still running 30 s after SIGINT"; cat "$log"; exit 1; fi
wait "$pid" || true
grep -q '"embedded PostgreSQL stopped"' "$log" || { echo "readme-smoke: embedded PostgreSQL was not stopped cleanly"; cat "$log"; exit 1; }
[[ ! -e .data/postgres/postmaster.pid ]] || { echo "readme-smoke: postmaster.pid left behind"; exit 1; }
echo "readme-smoke: ok (npm install, npm start, register/login/me, a task run, clean Ctrl-C)"
