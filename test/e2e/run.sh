#!/usr/bin/env bash
# End-to-end test on a real cluster (kind, in .github/workflows/e2e.yml):
# stagegate installed from manifests/ follows a Git repository served in the
# cluster (examples/native, with images a kind cluster can pull) and the
# seeds' scenario holds:
#   1. the migration Job gates the application;
#   2. a commit changing the Job deletes and recreates it, so it runs again;
#   3. a failing Job blocks the application, with an Event saying so.
#
# Needs: kubectl on a cluster where the images $STAGEGATE_IMAGE and
# stagegate-e2e-git:local are loaded, jq, tar.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=test/e2e/lib.sh
source test/e2e/lib.sh

STAGEGATE_IMAGE=${STAGEGATE_IMAGE:-ghcr.io/stagegate/stagegate:e2e}
GIT_NS=e2e-git
AGENT_NS=stagegate-system
APP_NS=shop

# Runs a shell script (from stdin) in the Git server's working copy.
in_repo() {
  kubectl -n "$GIT_NS" exec -i deploy/git-server -c git-daemon -- \
    sh -euc 'cd /srv/git/fleet && sh -eu'
}

log "Git server with examples/native"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R examples/native "$work/fleet"
cp -R test/e2e/kind-overrides/. "$work/fleet/"
tar -czf "$work/fleet.tar.gz" -C "$work/fleet" .
kubectl apply -f test/e2e/git-server.yaml
kubectl -n "$GIT_NS" create configmap fleet-files \
  --from-file=fleet.tar.gz="$work/fleet.tar.gz" --dry-run=client -o yaml |
  kubectl apply -f -
kubectl -n "$GIT_NS" rollout status deployment/git-server --timeout=120s

log "stagegate from manifests/"
kubectl apply --server-side -k manifests/
config=$(
  cat <<YAML
repo: git://git-server.$GIT_NS.svc.cluster.local/fleet
branch: main
interval: 10s
concurrency: 4
namespace: $AGENT_NS
cacheDir: /var/cache/stagegate
listen: 0.0.0.0:8080
leaderElect: true
YAML
)
kubectl -n "$AGENT_NS" patch configmap stagegate-config --type merge \
  -p "$(jq -n --arg config "$config" '{data: {"config.yaml": $config}}')"
kubectl -n "$AGENT_NS" set image deployment/stagegate stagegate="$STAGEGATE_IMAGE"
kubectl -n "$AGENT_NS" rollout status deployment/stagegate --timeout=180s

log "1. the migration Job gates the application"
migration_done() { job_condition "$APP_NS" db-migrate Complete; }
app_absent() {
  [ -z "$(kubectl -n "$APP_NS" get deployment shop-web --ignore-not-found -o name 2>/dev/null)" ]
}
deadline=$((SECONDS + 300))
until migration_done; do
  # The Job sleeps 20 s: the application must not appear meanwhile.
  app_absent || fail "Deployment shop-web exists before Job db-migrate completed"
  ((SECONDS < deadline)) || fail "Job db-migrate did not complete in 300s"
  sleep 1
done
wait_until 180 "Deployment shop-web available" \
  kubectl -n "$APP_NS" wait deployment/shop-web --for=condition=Available --timeout=5s
completed=$(field "$APP_NS" job/db-migrate '{.status.completionTime}')
created=$(field "$APP_NS" deployment/shop-web '{.metadata.creationTimestamp}')
[[ ! "$created" < "$completed" ]] ||
  fail "shop-web created at $created, before db-migrate completed at $completed"
first_uid=$(field "$APP_NS" job/db-migrate '{.metadata.uid}')
first_hash=$(field "$APP_NS" job/db-migrate '{.metadata.annotations.stagegate\.dev/spec-hash}')
[ -n "$first_hash" ] || fail "Job db-migrate has no stagegate.dev/spec-hash annotation"

log "2. a commit changing the Job recreates it"
in_repo <<'SH'
sed -i '/name: MIGRATION_VERSION/{n;s/value: .*/value: "2"/;}' pre/migration.yaml
git commit -qam "migration version 2"
SH
new_job() {
  local uid
  uid=$(field "$APP_NS" job/db-migrate '{.metadata.uid}')
  [ -n "$uid" ] && [ "$uid" != "$1" ]
}
wait_until 180 "Job db-migrate recreated" new_job "$first_uid"
second_uid=$(field "$APP_NS" job/db-migrate '{.metadata.uid}')
wait_until 180 "recreated Job db-migrate complete" job_condition "$APP_NS" db-migrate Complete
version=$(field "$APP_NS" job/db-migrate '{.spec.template.spec.containers[0].env[?(@.name=="MIGRATION_VERSION")].value}')
[ "$version" = 2 ] || fail "recreated Job runs MIGRATION_VERSION=$version, not 2"
second_hash=$(field "$APP_NS" job/db-migrate '{.metadata.annotations.stagegate\.dev/spec-hash}')
[ "$second_hash" != "$first_hash" ] || fail "spec hash unchanged after the Job changed"
wait_until 60 "a Recreated Event on Job db-migrate" has_event "$APP_NS" Recreated db-migrate

log "3. a failing Job blocks the application, with an Event"
in_repo <<'SH'
sed -i '/name: MIGRATION_VERSION/{n;s/value: .*/value: "3"/;}' pre/migration.yaml
sed -i 's|command: \["sh", "-c", .*|command: ["sh", "-c", "echo migration 3 failed >\&2; exit 1"]|' pre/migration.yaml
sed -i '/name: APP_REVISION/{n;s/value: .*/value: "2"/;}' application/deployment.yaml
git commit -qam "failing migration; application revision 2"
SH
wait_until 180 "Job db-migrate recreated for the failing migration" new_job "$second_uid"
wait_until 300 "Job db-migrate Failed" job_condition "$APP_NS" db-migrate Failed
wait_until 120 "a Warning Event Failed on Job db-migrate" \
  has_event "$APP_NS" Failed db-migrate '.type == "Warning"'
wait_until 120 "a StageBlocked Event for stage application" \
  has_event "$AGENT_NS" StageBlocked stagegate-state \
  '.type == "Warning" and (.message | contains("application"))'
# Three more polls: the application must stay at revision 1.
sleep 30
revision=$(field "$APP_NS" deployment/shop-web '{.spec.template.spec.containers[0].env[?(@.name=="APP_REVISION")].value}')
[ "$revision" = 1 ] || fail "shop-web was updated to APP_REVISION=$revision behind a failed migration"

log "PASS"
