# Helpers of the e2e scripts; sourced, not run.
# shellcheck shell=bash

log() { printf '\n=== %s\n' "$*" >&2; }

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 2 s until it
# succeeds; fail naming DESCRIPTION after SECONDS.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      fail "timed out after ${timeout}s waiting for: $what"
    fi
    sleep 2
  done
}

# The value of a jsonpath of one object, empty when the object is absent.
field() {
  local namespace=$1 object=$2 jsonpath=$3
  kubectl -n "$namespace" get "$object" --ignore-not-found -o "jsonpath=$jsonpath"
}

job_condition() {
  local namespace=$1 job=$2 type=$3
  [ "$(field "$namespace" "job/$job" "{.status.conditions[?(@.type==\"$type\")].status}")" = True ]
}

# Whether an Event with this reason exists on the named object; the extra jq
# filter (default: true) narrows it further.
has_event() {
  local namespace=$1 reason=$2 name=$3 filter=${4:-true}
  kubectl -n "$namespace" get events -o json |
    jq -e --arg reason "$reason" --arg name "$name" \
      "[.items[] | select(.reason == \$reason and .involvedObject.name == \$name) | select($filter)] | length > 0" \
      >/dev/null
}
