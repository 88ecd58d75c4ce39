#!/bin/sh
# Stand-in runner for test instances (POSIX sh; runs under busybox: wget, sed, tr, base64, sleep, cat).
#
# It uses its credential and its command line the way the real runner does
# (tests/forges/shapes/runner.json records where each behaviour was read):
#   act_runner daemon [--config F]: reads the runner file (config runner.file,
#     else /data/.runner: JSON id, uuid, name, token, address, labels,
#     ephemeral), then Declare -> FetchTask until a task -> UpdateTask
#     (RESULT_SUCCESS). An ephemeral runner file means one task, then exit 0.
#   forgejo-runner one-job --url U --uuid X --token-url file:P --label L...
#     [--handle H] [--wait]: Declare -> FetchSingleTask (with the handle) or
#     FetchTask -> UpdateTask; without --wait it asks once and exits 2 when no
#     task came (poll.ErrNoTaskReceived), as forgejo-runner 12.8 does.
#   GitHub: reads the JIT config file (base64 JSON from the fake forge) and calls
#     the fake forge's stand-in protocol /_fake/github-runner/{online,acquire,complete}.
# Every RPC carries x-runner-uuid / x-runner-token. Exit 3: gave up after the
# polls (a stand-in limit; the real runners keep asking).
#
# usage: runner.sh [daemon|one-job] [flags above] [--runner-file F] [--jit-file F] [--polls N] [--interval S]
#        (also: RUNNER_FILE, JIT_FILE, RUNNER_HANDLE, RUNNER_POLLS, RUNNER_INTERVAL)
set -u

RUNNER_FILE=${RUNNER_FILE:-}
JIT_FILE=${JIT_FILE:-/run/runner-scaler/jitconfig}
HANDLE=${RUNNER_HANDLE:-}
POLLS=${RUNNER_POLLS:-120}
INTERVAL=${RUNNER_INTERVAL:-1}
CONFIG=
URL_FLAG=
UUID_FLAG=
TOKEN_URL=
LABELS_FLAG=
WAIT=

while [ $# -gt 0 ]; do
  case "$1" in
    --runner-file) RUNNER_FILE=$2; shift 2 ;;
    --jit-file) JIT_FILE=$2; shift 2 ;;
    --handle) HANDLE=$2; shift 2 ;;
    --polls) POLLS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --config|-c) CONFIG=$2; shift 2 ;;
    --url) URL_FLAG=$2; shift 2 ;;
    --uuid) UUID_FLAG=$2; shift 2 ;;
    --token-url) TOKEN_URL=$2; shift 2 ;;
    --label) LABELS_FLAG="$LABELS_FLAG${LABELS_FLAG:+,}\"${2%%:*}\""; shift 2 ;;
    --wait|-w) WAIT=1; shift ;;
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

task_loop() { # MODE (fetch once or until a task; sets TASK)
  VERSION=0
  i=0
  TASK=
  METHOD=FetchTask
  [ -n "$HANDLE" ] && METHOD=FetchSingleTask
  while [ "$i" -lt "$POLLS" ]; do
    if [ -n "$HANDLE" ]; then
      BODY="{\"tasksVersion\":\"$VERSION\",\"handle\":\"$HANDLE\"}"
    else
      BODY="{\"tasksVersion\":\"$VERSION\"}"
    fi
    OUT=$(rpc "$METHOD" "$BODY") || { say "$METHOD failed"; exit 1; }
    V=$(json_num tasksVersion "$OUT")
    [ -n "$V" ] && VERSION=$V
    case "$OUT" in
      *'"task"'*) TASK=$(json_num id "$OUT"); return 0 ;;
    esac
    [ "$1" = once ] && return 0
    i=$((i + 1))
    sleep "$INTERVAL"
  done
}

finish_task() {
  say "running task $TASK"
  rpc UpdateTask "{\"state\":{\"id\":\"$TASK\",\"result\":\"RESULT_SUCCESS\"},\"outputs\":{}}" >/dev/null \
    || { say "UpdateTask failed"; exit 1; }
  say "task $TASK done"
}

if [ -n "$URL_FLAG$UUID_FLAG$TOKEN_URL" ]; then   # forgejo-runner one-job with a connection from flags
  [ -n "$URL_FLAG" ] || { say "\`url\` is empty"; exit 1; }
  [ -n "$UUID_FLAG" ] || { say "\`uuid\` is empty"; exit 1; }
  [ -n "$TOKEN_URL" ] || { say "\`token-url\` is empty"; exit 1; }
  case "$TOKEN_URL" in file:*) ;; *) say "unsupported secret URL: $TOKEN_URL"; exit 1 ;; esac
  TOKEN_PATH=${TOKEN_URL#file:}
  TOKEN_PATH=${TOKEN_PATH#//}
  [ -r "$TOKEN_PATH" ] || { say "cannot read secret $TOKEN_URL"; exit 1; }
  TOKEN=$(cat "$TOKEN_PATH")
  UUID=$UUID_FLAG
  ADDRESS=${URL_FLAG%/}
  say "one-job runner $UUID declaring to $ADDRESS"
  rpc Declare "{\"version\":\"standin\",\"labels\":[${LABELS_FLAG}]}" >/dev/null || { say "Declare failed"; exit 1; }
  if [ -n "$WAIT" ]; then task_loop wait; else task_loop once; fi
  if [ -z "$TASK" ]; then
    if [ -n "$WAIT" ]; then say "no task after $POLLS polls"; exit 3; fi
    say "no task received"; exit 2
  fi
  finish_task
  exit 0
fi

if [ -z "$RUNNER_FILE" ] && [ -n "$CONFIG" ] && [ -r "$CONFIG" ]; then   # act_runner: runner.file
  RUNNER_FILE=$(sed -n 's/^  file:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$CONFIG" | head -n 1)
fi
[ -n "$RUNNER_FILE" ] || RUNNER_FILE=/data/.runner

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
  case "$RUNNER" in *'"ephemeral": true'*|*'"ephemeral":true'*) EPHEMERAL=1 ;; *) EPHEMERAL= ;; esac
  DONE=0
  while :; do
    task_loop wait
    if [ -z "$TASK" ]; then
      [ "$DONE" -gt 0 ] && exit 0
      say "no task after $POLLS polls"; exit 3
    fi
    finish_task
    DONE=$((DONE + 1))
    [ -n "$EPHEMERAL" ] && exit 0   # ephemeral runner file: one task, then exit
  done
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
