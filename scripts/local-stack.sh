#!/usr/bin/env bash
# The local stack: start the appliance emulator, then run the Pulumi CLI against it.
#   scripts/local-stack.sh up|preview|down
# State, the emulator's pid and its password stay in .state/ (ignored by git). The local
# stack uses a file backend and a fixed passphrase; both are for this stack only.
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-up}
state=.state
pid_file=$state/emulator.pid
python=venv/bin/python

require_pulumi() {
  if ! command -v pulumi >/dev/null 2>&1; then
    echo "The Pulumi CLI is not installed: install it (https://www.pulumi.com/docs/iac/download-install/), make sure \`pulumi\` is on PATH, then run \`make $action\` again." >&2
    exit 1
  fi
}

emulator_running() {
  [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

start_emulator() {
  if emulator_running; then
    echo "Appliance emulator already running (pid $(cat "$pid_file"))."
    return
  fi
  mkdir -p "$state"
  "$python" -m emulators.appliance --nodes 3 --domain local.test --service-fqdn ws1.local.test \
    --admin-password-env WS1_ACCESS_ADMIN_PASSWORD \
    --service-ports 19441,19442,19443 --configurator-ports 19451,19452,19453 \
    >"$state/emulator.json" 2>"$state/emulator.log" &
  echo $! >"$pid_file"
  for _ in $(seq 50); do
    [[ -s $state/emulator.json ]] && break
    emulator_running || { cat "$state/emulator.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "Appliance emulator started (pid $(cat "$pid_file")): $(head -c 400 "$state/emulator.json")"
}

stop_emulator() {
  if emulator_running; then
    kill "$(cat "$pid_file")"
    echo "Appliance emulator stopped."
  fi
  rm -f "$pid_file"
}

case $action in
  up|preview)
    require_pulumi
    mkdir -p "$state/backend" "$state/local-proxy"
    if [[ ! -s $state/admin-password ]]; then
      (umask 077 && "$python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$state/admin-password")
    fi
    WS1_ACCESS_ADMIN_PASSWORD=$(cat "$state/admin-password")
    export WS1_ACCESS_ADMIN_PASSWORD
    export PULUMI_BACKEND_URL="file://$PWD/$state/backend"
    export PULUMI_CONFIG_PASSPHRASE=local-stack-only
    start_emulator
    pulumi stack select --create local --non-interactive >/dev/null
    if [[ $action == up ]]; then
      pulumi up --stack local --yes --non-interactive
      echo "Exported trust:"
      pulumi stack output --stack local --json
    else
      pulumi preview --stack local --non-interactive --diff
    fi
    ;;
  down)
    stop_emulator
    ;;
  *)
    echo "usage: $0 up|preview|down" >&2
    exit 2
    ;;
esac
