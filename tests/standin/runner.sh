#!/bin/sh
# Stand-in runner for test instances (POSIX sh; runs under busybox: wget, sed, tr, base64, sleep).
#
# It uses its credential the way the real runner does, takes one job, reports
# it done and exits 0 (exit 3 when no job came within the polls):
#   Gitea / Forgejo: reads act_runner's runner file (JSON: id, uuid, name, token,
#     address, labels) and calls the runner ConnectRPC service:
#     Declare -> FetchTask (until a task; with --handle on Forgejo) -> UpdateTask
#     (RESULT_SUCCESS), each with x-runner-uuid / x-runner-token headers.
#   GitHub: reads the JIT config file (base64 JSON from the fake forge) and calls
#     the fake forge's stand-in protocol /_fake/github-runner/{online,acquire,complete}.
#
# usage: runner.sh [--runner-file F] [--jit-file F] [--handle H] [--polls N] [--interval S]
#        (also: RUNNER_FILE, JIT_FILE, RUNNER_HANDLE, RUNNER_POLLS, RUNNER_INTERVAL)
set -u

RUNNER_FILE=${RUNNER_FILE:-/data/.runner}
JIT_FILE=${JIT_FILE:-/run/runner-scaler/jitconfig}
HANDLE=${RUNNER_HANDLE:-}
POLLS=${RUNNER_POLLS:-120}
INTERVAL=${RUNNER_INTERVAL:-1}

while [ $# -gt 0 ]; do
  case "$1" in
    --runner-file) RUNNER_FILE=$2; shift 2 ;;
    --jit-file) JIT_FILE=$2; shift 2 ;;
    --handle) HANDLE=$2; shift 2 ;;
    --polls) POLLS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --config|--wait|daemon|one-job) [ "$1" = "--config" ] && shift; shift ;;
    *) shift ;;
  esac
done

say() { echo "standin: $*" >&2; }

# json_str KEY JSON -> the string value of "KEY": "..."
json_str() {
  printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
}
# json_num KEY JSON -> the integer value of "KEY": 5 or "KEY": "5" (proto3 int64)
json_num() {
  printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\{0,1\}\([0-9][0-9]*\).*/\1/p"
}
# json_arr KEY JSON -> the raw [...] value of "KEY"
json_arr() {
  printf '%s' "$2" | tr -d '\n' | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\(\[[^]]*\]\).*/\1/p"
}

rpc() { # METHOD BODY -> response body on stdout
  wget -q -O - \
    --header "Content-Type: application/json" \
    --header "Connect-Protocol-Version: 1" \
    --header "x-runner-uuid: $UUID" \
    --header "x-runner-token: $TOKEN" \
    --post-data "$2" "$ADDRESS/api/actions/runner.v1.RunnerService/$1"
}

gh() { # VERB [BODY]
  wget -q -O - --header "x-jit-config: $JIT" --post-data "${2:-}" "$URL/_fake/github-runner/$1"
}

if [ -r "$RUNNER_FILE" ]; then
  RUNNER=$(cat "$RUNNER_FILE")
  UUID=$(json_str uuid "$RUNNER")
  TOKEN=$(json_str token "$RUNNER")
  NAME=$(json_str name "$RUNNER")
  ADDRESS=$(json_str address "$RUNNER")
  ADDRESS=${ADDRESS%/}
  LABELS=$(json_arr labels "$RUNNER")
  [ -n "$LABELS" ] || LABELS='[]'
  if [ -z "$UUID" ] || [ -z "$TOKEN" ] || [ -z "$ADDRESS" ]; then
    say "runner file $RUNNER_FILE lacks uuid/token/address"; exit 2
  fi
  say "runner $NAME declaring to $ADDRESS"
  rpc Declare "{\"version\":\"standin\",\"labels\":$LABELS}" >/dev/null || { say "Declare failed"; exit 1; }
  VERSION=0
  i=0
  TASK=
  while [ "$i" -lt "$POLLS" ]; do
    if [ -n "$HANDLE" ]; then
      BODY="{\"tasksVersion\":\"$VERSION\",\"handle\":\"$HANDLE\"}"
    else
      BODY="{\"tasksVersion\":\"$VERSION\"}"
    fi
    OUT=$(rpc FetchTask "$BODY") || { say "FetchTask failed"; exit 1; }
    V=$(json_num tasksVersion "$OUT")
    [ -n "$V" ] && VERSION=$V
    case "$OUT" in
      *'"task"'*) TASK=$(json_num id "$OUT"); break ;;
    esac
    i=$((i + 1))
    sleep "$INTERVAL"
  done
  if [ -z "$TASK" ]; then say "no task after $POLLS polls"; exit 3; fi
  say "running task $TASK"
  rpc UpdateTask "{\"state\":{\"id\":\"$TASK\",\"result\":\"RESULT_SUCCESS\"},\"outputs\":{}}" >/dev/null \
    || { say "UpdateTask failed"; exit 1; }
  say "task $TASK done"
  exit 0
fi

if [ -r "$JIT_FILE" ]; then
  JIT=$(tr -d '\n' < "$JIT_FILE")
  CFG=$(printf '%s' "$JIT" | base64 -d)
  URL=$(json_str url "$CFG")
  URL=${URL%/}
  NAME=$(json_str name "$CFG")
  [ -n "$URL" ] || { say "JIT config has no url"; exit 2; }
  say "runner $NAME online at $URL"
  gh online >/dev/null || { say "online failed"; exit 1; }
  i=0
  JOB=
  while [ "$i" -lt "$POLLS" ]; do
    OUT=$(gh acquire) || { say "acquire failed"; exit 1; }
    JOB=$(json_num job_id "$OUT")
    [ -n "$JOB" ] && break
    i=$((i + 1))
    sleep "$INTERVAL"
  done
  if [ -z "$JOB" ]; then say "no job after $POLLS polls"; exit 3; fi
  gh complete success >/dev/null || { say "complete failed"; exit 1; }
  say "job $JOB done"
  exit 0
fi

say "no credential: neither $RUNNER_FILE nor $JIT_FILE is readable"
exit 2
