#!/usr/bin/env bash
# stagegate end to end on this machine, no cluster needed: kube-sim plays the
# cluster, examples/native becomes a local Git repository, and the real agent
# applies it. Stages turn Ready in dependency order: the migration Job first,
# then the application.
#
#   ./demo.sh          run the agent (Ctrl-C to stop) with its status page on
#                      http://127.0.0.1:8080/ (STAGEGATE_DEMO_PORT); follow the README from there
#   ./demo.sh --once   one reconcile, a summary, exit 0 when every stage is Ready
#
# Leaves its files in $STAGEGATE_DEMO_DIR (default /tmp/stagegate-demo).
set -euo pipefail
cd "$(dirname "$0")"

work=${STAGEGATE_DEMO_DIR:-/tmp/stagegate-demo}
stagegate=${STAGEGATE_BIN:-target/debug/stagegate}
kube_sim=${KUBE_SIM_BIN:-target/debug/kube-sim}
if [ -z "${STAGEGATE_BIN:-}" ] || [ -z "${KUBE_SIM_BIN:-}" ]; then
  echo "==> building stagegate and kube-sim"
  cargo build --quiet --bins --package stagegate --package kube-sim
fi

rm -rf "$work"
mkdir -p "$work"

echo "==> starting kube-sim (a simulated Kubernetes API server)"
"$kube_sim" --port 0 --kubeconfig-out "$work/kubeconfig" 2>"$work/kube-sim.log" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s "$work/kubeconfig" ] && break
  kill -0 "$sim" 2>/dev/null || { cat "$work/kube-sim.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/kubeconfig" ] || { echo "kube-sim did not start" >&2; exit 1; }

echo "==> turning examples/native into a Git repository at $work/repo"
cp -r examples/native "$work/repo"
git -C "$work/repo" init -q -b main
git -C "$work/repo" add -A
git -C "$work/repo" -c user.name=demo -c user.email=demo@example.com commit -q -m "shop: migration + application"

args=(run --repo "file://$work/repo" --namespace stagegate-system --create-namespace
      --cache-dir "$work/cache" --kubeconfig "$work/kubeconfig")
if [ "${1:-}" = "--once" ]; then
  # One reconcile: no page to look at, so any free port.
  "$stagegate" "${args[@]}" --listen 127.0.0.1:0 --once
else
  # The status page, on a fixed port so that its address can be printed.
  port=${STAGEGATE_DEMO_PORT:-8080}
  cat <<TXT
==> running the agent. The status page: http://127.0.0.1:$port/
    In another terminal:
      export KUBECONFIG=$work/kubeconfig
      $stagegate status
      kubectl get jobs,deployments -n shop
TXT
  "$stagegate" "${args[@]}" --listen "127.0.0.1:$port" --interval 5s --leader-elect false
fi
