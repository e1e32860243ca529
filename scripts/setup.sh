#!/usr/bin/env bash
# Set up facestream from a clean checkout: system packages (Debian/Ubuntu, as root or with sudo),
# Redis on 127.0.0.1:6379 (started if nothing answers there), and .venv with `pip install -e '.[dev]'`.
# Idempotent and quiet: packages already present are skipped, an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

redis_up() {  # PING 127.0.0.1:6379 without redis-cli
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && read -r -t 1 line <&3 && [[ $line == +PONG* ]]' 2>/dev/null
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Python: 3.11 (pyproject requires >=3.11,<3.12)
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi

# -- system packages ---------------------------------------------------------------------------------
WANT=(openssl python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
      docker-compose)  # docker-compose: tests validate docker/docker-compose.yml offline (`config -q`)
redis_up || command -v redis-server >/dev/null 2>&1 || WANT+=(redis-server)
if ! command -v "$PY" >/dev/null 2>&1; then WANT+=(python3 python3-venv)
elif [[ "$(command -v "$PY")" == /usr/bin/* ]]; then WANT+=(python3-venv)  # Debian splits out ensurepip
elif ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then WANT+=(python3-venv); fi

MISSING=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${WANT[@]}"; do pkg_installed "$p" || MISSING+=("$p"); done
fi
if [ "${#MISSING[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "apt-get install ${MISSING[*]}"
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
  else
    log "WARNING: missing ${MISSING[*]} and no apt-get: install them yourself"
  fi
fi

# -- Redis -------------------------------------------------------------------------------------------
if ! redis_up; then
  log "starting redis-server on 127.0.0.1:6379"
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { log "ERROR: redis-server did not start"; exit 1; }
fi

# -- virtualenv --------------------------------------------------------------------------------------
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { log "ERROR: $PY is not Python 3.11 (set PYTHON=/path/to/python3.11)"; exit 1; }
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
log "pip install -e '.[dev]'"
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
.venv/bin/python -c "import facestream, core.settings, av, redis, torch" \
  || { log "ERROR: the install is incomplete"; exit 1; }
log "ok: .venv/bin/facestream"
