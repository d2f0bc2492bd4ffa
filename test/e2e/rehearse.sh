#!/usr/bin/env bash
# The e2e scenario (scenario.sh) without Docker or kind: kube-sim as the
# cluster, a local Git repository, and `stagegate run` as a local process.
# It exercises the same assertions as the kind job, on the simulated Job
# controller (the sim.stagegate.dev annotations of kind-overrides/).
#
# Usage: test/e2e/rehearse.sh [STAGEGATE_BIN KUBE_SIM_BIN]
# (default: builds both with cargo and uses target/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=test/e2e/lib.sh
source test/e2e/lib.sh

if [ $# -ge 2 ]; then
  stagegate_bin=$1 kube_sim_bin=$2
else
  cargo build --quiet --bin stagegate
  cargo build --quiet -p kube-sim --bin kube-sim
  target=${CARGO_TARGET_DIR:-target}
  stagegate_bin=$target/debug/stagegate kube_sim_bin=$target/debug/kube-sim
fi

AGENT_NS=stagegate-system
APP_NS=shop
work=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "--- agent log (last 40 lines)" >&2
    tail -n 40 "$work/agent.log" >&2 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

log "kube-sim"
"$kube_sim_bin" --port 0 --kubeconfig-out "$work/kubeconfig" >"$work/kube-sim.log" 2>&1 &
pids+=($!)
wait_until 30 "kube-sim's kubeconfig" test -s "$work/kubeconfig"
export KUBECONFIG=$work/kubeconfig KUBECACHEDIR=$work/kubectl-cache

log "Git repository from examples/native"
repo=$work/fleet
cp -R examples/native "$repo"
cp -R test/e2e/kind-overrides/. "$repo/"
export GIT_AUTHOR_NAME="stagegate e2e" GIT_AUTHOR_EMAIL=e2e@stagegate.invalid
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" commit -qm "examples/native for the e2e test"
in_repo() {
  (cd "$repo" && sh -eu)
}

log "manifests/ and stagegate run"
kubectl apply --server-side -k manifests/ >/dev/null
POD_NAME=rehearsal "$stagegate_bin" run --repo "file://$repo" --branch main \
  --kubeconfig "$work/kubeconfig" --cache-dir "$work/cache" \
  --listen 127.0.0.1:0 --interval 3s --namespace "$AGENT_NS" \
  >"$work/agent.log" 2>&1 &
pids+=($!)

# shellcheck source=test/e2e/scenario.sh
source test/e2e/scenario.sh
