#!/usr/bin/env bash
# What to look at when the e2e test fails; run by the workflow on failure.
set -uo pipefail
for ns in stagegate-system shop e2e-git; do
  echo "=== $ns: objects"
  kubectl -n "$ns" get all,configmaps,leases -o wide
  echo "=== $ns: events"
  kubectl -n "$ns" get events --sort-by=.lastTimestamp
done
echo "=== stagegate state: the Stage objects and the source"
kubectl -n stagegate-system get stages -o wide
kubectl -n stagegate-system get stages -o yaml
kubectl -n stagegate-system get configmap stagegate-source -o yaml
echo "=== stagegate logs"
kubectl -n stagegate-system logs deployment/stagegate --all-containers --tail=500
echo "=== Job db-migrate"
kubectl -n shop describe job db-migrate
kubectl -n shop logs job/db-migrate --tail=50
exit 0
