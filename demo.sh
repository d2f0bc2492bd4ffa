#!/usr/bin/env bash
# stagegate end to end on this machine, no cluster needed: kube-sim plays the
# cluster, examples/native becomes a local Git repository, and the real agent
# applies it. Stages turn Ready in dependency order: the migration Job first,
# then the application.
#
#   ./demo.sh          run the agent (Ctrl-C to stop) with its status page on
#                      http://127.0.0.1:8080/ (or the next free port, or
#                      $STAGEGATE_DEMO_PORT); follow the README from there
#   ./demo.sh --once   one reconcile, a summary, exit 0 when every stage is Ready
#
# The running demo keeps its files in $STAGEGATE_DEMO_DIR (default
# /tmp/stagegate-demo); `--once` uses its own directory (default
# /tmp/stagegate-demo-once) and its own ports, so it can run beside a running
# demo without touching it.
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD

once=false
case "${1:-}" in
  --once) once=true ;;
  "") ;;
  -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo.sh: unknown argument '$1' (try --once or --help)" >&2; exit 2 ;;
esac

if $once; then
  work=${STAGEGATE_DEMO_DIR:-/tmp/stagegate-demo-once}
else
  work=${STAGEGATE_DEMO_DIR:-/tmp/stagegate-demo}
fi
target_dir=${CARGO_TARGET_DIR:-$root/target}
stagegate=${STAGEGATE_BIN:-$target_dir/debug/stagegate}
kube_sim=${KUBE_SIM_BIN:-$target_dir/debug/kube-sim}

# Another demo in the same directory would have its repository and cluster
# pulled from under it: refuse, naming it.
if [ -f "$work/demo.pid" ]; then
  other=$(cat "$work/demo.pid" 2>/dev/null || true)
  if [ -n "$other" ] && kill -0 "$other" 2>/dev/null; then
    echo "demo.sh: a demo is already running in $work (pid $other)." >&2
    echo "         Stop it with Ctrl-C in its terminal, or choose another directory:" >&2
    echo "         STAGEGATE_DEMO_DIR=/tmp/my-demo ./demo.sh${1:+ $1}" >&2
    exit 1
  fi
fi

if [ -z "${STAGEGATE_BIN:-}" ] || [ -z "${KUBE_SIM_BIN:-}" ]; then
  echo "==> building stagegate and kube-sim (the first build takes a few minutes)"
  cargo build --bins --package stagegate --package kube-sim
fi

rm -rf "$work"
mkdir -p "$work"
echo $$ >"$work/demo.pid"

# The agent's HTTP port (status page, metrics): $STAGEGATE_DEMO_PORT, else
# the first free one from 8080.
port=${STAGEGATE_DEMO_PORT:-}
for candidate in $( [ -n "$port" ] || seq 8080 8180); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    port=$candidate
    break
  fi
done
[ -n "$port" ] || { echo "demo.sh: no free port between 8080 and 8180" >&2; exit 1; }

echo "==> starting kube-sim (a simulated Kubernetes API server)"
"$kube_sim" --port 0 --kubeconfig-out "$work/kubeconfig" 2>"$work/kube-sim.log" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; rm -f "$work/demo.pid"' EXIT
for _ in $(seq 1 300); do
  [ -s "$work/kubeconfig" ] && break
  kill -0 "$sim" 2>/dev/null || { cat "$work/kube-sim.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/kubeconfig" ] || { echo "kube-sim did not start" >&2; exit 1; }

echo "==> installing the Stage resource (manifests/00-crd.yaml), as an install does"
kubectl --kubeconfig "$work/kubeconfig" apply -f manifests/00-crd.yaml >/dev/null

echo "==> turning examples/native into a Git repository at $work/repo"
cp -r examples/native "$work/repo"
git -C "$work/repo" init -q -b main
# A repository-local identity, so the README's commits work on a machine
# with no git identity configured.
git -C "$work/repo" config user.name "stagegate demo"
git -C "$work/repo" config user.email "demo@stagegate.invalid"
git -C "$work/repo" add -A
git -C "$work/repo" commit -q -m "shop: migration + application"

cat <<TXT
==> running the agent. In another terminal:
      export KUBECONFIG=$work/kubeconfig PATH=$(dirname "$stagegate"):\$PATH
      stagegate status
      kubectl get stages -n stagegate-system
      kubectl get jobs,deployments,pods -n shop
      cd $work/repo     # commit here; the agent follows main
TXT
$once || echo "    Status page: http://127.0.0.1:$port/   (metrics: http://127.0.0.1:$port/metrics)"

args=(run --repo "file://$work/repo" --namespace stagegate-system --create-namespace
      --cache-dir "$work/cache" --listen "127.0.0.1:$port" --kubeconfig "$work/kubeconfig")
if $once; then
  "$stagegate" "${args[@]}" --once
else
  "$stagegate" "${args[@]}" --interval 5s --leader-elect false
fi
