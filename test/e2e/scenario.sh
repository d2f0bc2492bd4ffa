# The seeds' scenario, asserted with kubectl on whatever cluster the caller
# set up (run.sh: kind; rehearse.sh: kube-sim), with stagegate following the
# repository made from examples/native and test/e2e/kind-overrides:
#   1. the migration Job gates the application;
#   2. a commit changing the Job deletes and recreates it, so it runs again;
#   3. a failing Job blocks the application, with an Event saying so.
# Sourced after lib.sh; the caller defines `in_repo` (runs a shell script
# from stdin in the repository's working copy) and AGENT_NS and APP_NS.
# shellcheck shell=bash

log "1. the migration Job gates the application"
migration_done() { job_condition "$APP_NS" db-migrate Complete; }
app_absent() {
  [ -z "$(kubectl -n "$APP_NS" get deployment shop-web --ignore-not-found -o name 2>/dev/null)" ]
}
deadline=$((SECONDS + 300))
# The Job sleeps 20 s: the application must not appear meanwhile. The
# application is looked for first: seen, the Job must be complete by then
# (checking in the other order races with the agent's hand-off).
while true; do
  if app_absent; then
    migration_done && break
  else
    migration_done || fail "Deployment shop-web exists before Job db-migrate completed"
    break
  fi
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
sed -i 's|sim.stagegate.dev/outcome: succeed|sim.stagegate.dev/outcome: fail|' pre/migration.yaml
sed -i '/name: APP_REVISION/{n;s/value: .*/value: "2"/;}' application/deployment.yaml
git commit -qam "failing migration; application revision 2"
SH
wait_until 180 "Job db-migrate recreated for the failing migration" new_job "$second_uid"
wait_until 300 "Job db-migrate Failed" job_condition "$APP_NS" db-migrate Failed
wait_until 120 "a Warning Event Failed on Job db-migrate" \
  has_event "$APP_NS" Failed db-migrate '.type == "Warning"'
wait_until 120 "a StageBlocked Event on Stage application" \
  has_event "$AGENT_NS" StageBlocked application \
  '.type == "Warning" and .involvedObject.kind == "Stage" and (.message | contains("pre failed"))'
# Three more polls: the application must stay at revision 1.
sleep 30
revision=$(field "$APP_NS" deployment/shop-web '{.spec.template.spec.containers[0].env[?(@.name=="APP_REVISION")].value}')
[ "$revision" = 1 ] || fail "shop-web was updated to APP_REVISION=$revision behind a failed migration"

log "PASS"
