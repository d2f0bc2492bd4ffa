#!/usr/bin/env bash
# End-to-end test on a real cluster (kind, in .github/workflows/e2e.yml):
# stagegate installed from manifests/ follows a Git repository served in the
# cluster (examples/native, with images a kind cluster can pull) and the
# seeds' scenario (scenario.sh) holds.
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

# Runs a shell script (from stdin) in the Git server's working copy; the
# scenario commits through it.
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

# shellcheck source=test/e2e/scenario.sh
source test/e2e/scenario.sh
