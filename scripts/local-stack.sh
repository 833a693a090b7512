#!/usr/bin/env bash
# The local stack: start the appliance emulator, then run the Pulumi CLI against it.
#   scripts/local-stack.sh up|preview|down
#   scripts/local-stack.sh audit [stack files...] [--json] [--html FILE]
# `audit` needs no Pulumi CLI: without stack files it starts the emulator (if it is not
# running) and audits the local stack; with stack files it audits those and starts nothing.
# State, the emulator's pid and its password stay in .state/ (ignored by git). The local
# stack uses a file backend and a fixed passphrase; both are for this stack only.
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-up}
state=.state
pid_file=$state/emulator.pid
python=venv/bin/python

# The Pulumi CLI: the one on PATH, else the pinned version installed under .state/pulumi/
# (scripts/pulumi_cli.py says in one sentence why it cannot, and nothing else is started).
find_pulumi() {
  pulumi=$("$python" scripts/pulumi_cli.py) || exit 1
  # Its language and resource plugins lie next to it.
  PATH="$(dirname "$pulumi"):$PATH"
  export PATH
}

# Whether PID is a live process (a zombie that has exited but is not yet reaped counts as gone).
pid_alive() {
  local stat
  stat=$(ps -p "$1" -o stat= 2>/dev/null) || return 1
  stat=${stat//[[:space:]]/}
  [[ -n $stat && $stat != Z* ]]
}

# The pid in the pid file, if the file holds a plain number.
recorded_pid() {
  local pid
  [[ -f $pid_file ]] || return 1
  pid=$(<"$pid_file")
  pid=${pid//[[:space:]]/}
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  echo "$pid"
}

# Running means: the recorded pid is alive AND it is the appliance emulator, not some other
# process that was given the same pid after the emulator died.
emulator_running() {
  local pid
  pid=$(recorded_pid) || return 1
  pid_alive "$pid" || return 1
  [[ $(ps -p "$pid" -o args= 2>/dev/null) == *emulators.appliance* ]]
}

# Remove a pid file that does not point at a running emulator, saying so.
forget_stale_pid_file() {
  if [[ -f $pid_file ]] && ! emulator_running; then
    echo "Note: removed the stale $pid_file: \"$(head -c 40 "$pid_file" | tr -d '\n')\" is not the pid of a running appliance emulator." >&2
    rm -f "$pid_file"
  fi
}

# SIGTERM PID and wait up to 5 s for it to exit (SIGKILL after that); fails if it survives.
terminate() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  echo "The appliance emulator (pid $pid) did not exit within 5 seconds of SIGTERM; sending SIGKILL." >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 10); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  echo "The appliance emulator (pid $pid) is still running after SIGKILL; stop it by hand." >&2
  return 1
}

start_emulator() {
  forget_stale_pid_file
  if emulator_running; then
    echo "Appliance emulator already running (pid $(recorded_pid))."
    return
  fi
  mkdir -p "$state"
  # Remove the last run's output first, so an old JSON line cannot pass for this run's.
  rm -f "$state/emulator.json" "$state/emulator.log"
  "$python" -m emulators.appliance --nodes 3 --domain local.test --service-fqdn ws1.local.test \
    --admin-password-env WS1_ACCESS_ADMIN_PASSWORD \
    --service-ports 19441,19442,19443 --configurator-ports 19451,19452,19453 \
    --ssh-ports 19461,19462,19463 \
    >"$state/emulator.json" 2>"$state/emulator.log" &
  local pid=$!
  echo "$pid" >"$pid_file"
  # Our own child: check it by pid alone (its command line is ours until it has exec'd).
  for _ in $(seq 50); do
    grep -qs '^{' "$state/emulator.json" && break
    if ! pid_alive "$pid"; then
      cat "$state/emulator.log" >&2
      rm -f "$pid_file"
      echo "The appliance emulator exited before printing its JSON line; its log is above." >&2
      exit 1
    fi
    sleep 0.1
  done
  if ! grep -qs '^{' "$state/emulator.json"; then
    cat "$state/emulator.log" >&2
    if terminate "$pid"; then
      rm -f "$pid_file"
      echo "The appliance emulator printed no JSON line within 5 seconds, so it was stopped; its log is above." >&2
    else
      echo "The appliance emulator printed no JSON line within 5 seconds; its log is above." >&2
    fi
    exit 1
  fi
  echo "Appliance emulator started (pid $pid): $(head -c 400 "$state/emulator.json")"
}

stop_emulator() {
  forget_stale_pid_file
  if emulator_running; then
    terminate "$(recorded_pid)" || exit 1
    echo "Appliance emulator stopped."
  fi
  rm -f "$pid_file"
}

# The local stack's secrets, made once per checkout and kept in .state/ only: the emulator's
# admin password, and for the ssh route (stacks/Pulumi.local.yaml) the emulated nodes' SSH
# passwords and the local CA that issues node certificates.
use_local_secrets() {
  mkdir -p "$state"
  if [[ ! -s $state/admin-password ]]; then
    (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$state/admin-password")
  fi
  WS1_ACCESS_ADMIN_PASSWORD=$(cat "$state/admin-password")
  export WS1_ACCESS_ADMIN_PASSWORD
  for name in ssh-password ssh-root-password; do
    if [[ ! -s $state/$name ]]; then
      (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$state/$name")
    fi
  done
  if [[ ! -s $state/local-ca/ws1-issuing-ca.pem ]]; then
    (umask 077 && "$python" -m emulators.appliance_ssh new-ca "$state/local-ca")
  fi
  WS1_ACCESS_SSH_PASSWORD=$(cat "$state/ssh-password")
  WS1_ACCESS_SSH_ROOT_PASSWORD=$(cat "$state/ssh-root-password")
  WS1_ACCESS_SSH_ISSUING_CA_KEY=$(cat "$state/local-ca/ws1-issuing-ca.key")
  export WS1_ACCESS_SSH_PASSWORD WS1_ACCESS_SSH_ROOT_PASSWORD WS1_ACCESS_SSH_ISSUING_CA_KEY
}

case $action in
  up|preview)
    find_pulumi
    mkdir -p "$state/backend" "$state/local-proxy"
    use_local_secrets
    export PULUMI_BACKEND_URL="file://$PWD/$state/backend"
    export PULUMI_CONFIG_PASSPHRASE=local-stack-only
    start_emulator
    "$pulumi" stack select --create local --non-interactive >/dev/null
    if [[ $action == up ]]; then
      "$pulumi" up --stack local --yes --non-interactive
      echo "Exported trust:"
      "$pulumi" stack output --stack local --json
    else
      "$pulumi" preview --stack local --non-interactive --diff
    fi
    ;;
  audit)
    shift
    if [[ $# -eq 0 || $1 == -* ]]; then
      # The local stack: its emulator on the fixed ports the stack file names. Its messages
      # go to stderr, so that `--json` output stays pure JSON.
      use_local_secrets
      start_emulator >&2
      set -- stacks/Pulumi.local.yaml "$@"
    fi
    exec "$python" -m components.audit "$@"
    ;;
  down)
    stop_emulator
    ;;
  *)
    echo "usage: $0 up|preview|down|audit [stack files...] [--json] [--html FILE]" >&2
    exit 2
    ;;
esac
