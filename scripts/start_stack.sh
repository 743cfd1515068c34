#!/usr/bin/env bash
# Local imaging stack on loopback: Orthanc (DICOMweb) with our demo studies + MONAI Label (which serves OHIF).
#
#   scripts/start_stack.sh install            # Debian packages (orthanc, orthanc-dicomweb, chromium, chromium-driver)
#   scripts/start_stack.sh start [--no-monailabel]
#   scripts/start_stack.sh status
#   scripts/start_stack.sh stop
#
# Then: OHIF at http://127.0.0.1:${MONAILABEL_PORT}/ohif/ (the MONAI Label panel is in the "monai-label" mode:
# /ohif/monai-label?StudyInstanceUIDs=...), Orthanc at http://127.0.0.1:${ORTHANC_PORT}/ (REST, DICOMweb under
# /dicom-web/). OHIF reaches Orthanc through MONAI Label's proxy (/proxy/dicom/...), so the browser only talks to
# MONAI Label.
#
# Environment: ORTHANC_PORT (8042), MONAILABEL_PORT (8000), STACK_DIR (.stack: config, storage, logs, PID files),
# STACK_TIMEOUT (seconds to wait for MONAI Label's /info/, 300), MONAILABEL_APP (monailabel_app),
# PYTHON (.venv/bin/python).
#
# Loopback only: Orthanc 1.10 (Debian 12) has no HTTP bind-address option ("HttpBindAddresses" arrived in a later
# Orthanc), so its HTTP server listens on every interface but answers only loopback clients
# ("RemoteAccessAllowed": false; other clients get 401); its DICOM (C-STORE) server is disabled. MONAI Label binds
# 127.0.0.1. Every process is started in its own session (setsid) and its PID is written to $STACK_DIR/*.pid;
# `stop` ends exactly those process groups.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ORTHANC_PORT="${ORTHANC_PORT:-8042}"
MONAILABEL_PORT="${MONAILABEL_PORT:-8000}"
STACK_DIR="$(mkdir -p "${STACK_DIR:-$ROOT/.stack}" && cd "${STACK_DIR:-$ROOT/.stack}" && pwd)"
STACK_TIMEOUT="${STACK_TIMEOUT:-300}"
MONAILABEL_APP="${MONAILABEL_APP:-$ROOT/monailabel_app}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
ORTHANC_URL="http://127.0.0.1:${ORTHANC_PORT}"
MONAILABEL_URL="http://127.0.0.1:${MONAILABEL_PORT}"
PACKAGES=(orthanc orthanc-dicomweb chromium chromium-driver)

die() { echo "start_stack: $*" >&2; exit 2; }
log() { echo "start_stack: $*" >&2; }

dicomweb_plugin() {
    local so
    for so in /usr/share/orthanc/plugins/libOrthancDicomWeb.so /usr/lib/orthanc/libOrthancDicomWeb.so*; do
        [ -e "$so" ] && { echo "$so"; return 0; }
    done
    so="$(dpkg -L orthanc-dicomweb 2>/dev/null | grep -m1 'libOrthancDicomWeb\.so' || true)"
    [ -n "$so" ] && [ -e "$so" ] && { echo "$so"; return 0; }
    return 1
}

missing_packages() {
    local missing=()
    command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
    dicomweb_plugin >/dev/null || missing+=(orthanc-dicomweb)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    echo "${missing[@]:-}"
}

cmd_install() {
    local missing
    missing="$(missing_packages)"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        die "missing Debian packages: $missing; run as root (or: sudo apt-get install -y ${PACKAGES[*]})"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing packages ($missing) and no apt-get to install them"
    log "installing Debian packages: $missing"
    # keep the packages' own services (orthanc.service on port 8042) from starting during the install
    local policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null; } || rc=$?
    [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get install $missing failed (exit $rc)"
    missing="$(missing_packages)"
    [ -z "$missing" ] || die "still missing after apt-get: $missing"
}

# --- process bookkeeping -------------------------------------------------------------------------------------
pid_alive() {  # pidfile expected-command-substring
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

http_ok() {  # url [seconds]
    "$PYTHON" - "$1" "${2:-3}" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

port_in_use() {
    "$PYTHON" - "$1" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.socket()
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

wait_for() {  # url seconds pidfile name logfile
    local deadline=$((SECONDS + $2))
    until http_ok "$1"; do
        pid_alive "$3" "$4" || { tail -n 30 "$5" >&2 || true; die "$4 exited during start-up (log: $5)"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$5" >&2 || true; die "$4 did not answer $1 in $2 s (log: $5)"; }
        sleep 1
    done
}

group_has() {  # process-group-id command-substring: does a process of that group (still) run that command?
    "$PYTHON" - "$1" "$2" <<'EOF' >/dev/null 2>&1
import os, sys
group, needle = int(sys.argv[1]), sys.argv[2]
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.getpgid(int(pid)) == group:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read().replace(b"\0", b" ").decode(errors="replace"):
                    sys.exit(0)
    except OSError:
        pass
sys.exit(1)
EOF
}

stop_one() {  # pidfile expected-command-substring: end the process group the PID file names
    local pid
    [ -f "$1" ] || return 0
    pid="$(cat "$1")"
    # the leader, or children that outlived it (they keep its process group id)
    if [ -n "$pid" ] && { pid_alive "$1" "$2" || group_has "$pid" "$2"; }; then
        log "stopping $2 (process group $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do group_has "$pid" "" || break; sleep 0.25; done
        if group_has "$pid" ""; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    fi
    rm -f "$1"
}

# --- Orthanc ------------------------------------------------------------------------------------------------
write_orthanc_config() {
    local plugin
    plugin="$(dicomweb_plugin)" || die "DICOMweb plugin (orthanc-dicomweb) not found"
    mkdir -p "$STACK_DIR/orthanc-db"
    cat >"$STACK_DIR/orthanc.json" <<EOF
{
  "Name": "medpclip-stack",
  "StorageDirectory": "$STACK_DIR/orthanc-db",
  "IndexDirectory": "$STACK_DIR/orthanc-db",
  "StorageCompression": false,
  "Plugins": ["$plugin"],
  "ConcurrentJobs": 1,
  "HttpServerEnabled": true,
  "HttpPort": $ORTHANC_PORT,
  "HttpThreadsCount": 20,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SslEnabled": false,
  "WebDavEnabled": false,
  "DicomServerEnabled": false,
  "DicomPort": 0,
  "ExecuteLuaEnabled": false,
  "OverwriteInstances": true,
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": true,
    "WadoRoot": "/wado",
    "Ssl": false,
    "StudiesMetadata": "Full",
    "SeriesMetadata": "Full"
  }
}
EOF
}

start_orthanc() {
    local bin
    bin="$(command -v Orthanc || echo /usr/sbin/Orthanc)"
    if pid_alive "$STACK_DIR/orthanc.pid" Orthanc; then
        log "Orthanc already running (PID $(cat "$STACK_DIR/orthanc.pid"))"
    else
        port_in_use "$ORTHANC_PORT" && die "port $ORTHANC_PORT is taken by another process (set ORTHANC_PORT)"
        write_orthanc_config
        log "starting Orthanc on 127.0.0.1:$ORTHANC_PORT (log: $STACK_DIR/orthanc.log)"
        setsid "$bin" "$STACK_DIR/orthanc.json" >"$STACK_DIR/orthanc.log" 2>&1 </dev/null &
        echo $! >"$STACK_DIR/orthanc.pid"
    fi
    wait_for "$ORTHANC_URL/system" 60 "$STACK_DIR/orthanc.pid" Orthanc "$STACK_DIR/orthanc.log"
    http_ok "$ORTHANC_URL/dicom-web/studies" || die "Orthanc answers but its DICOMweb plugin does not (log: $STACK_DIR/orthanc.log)"
    log "uploading the demo studies"
    "$PYTHON" "$ROOT/scripts/stack_studies.py" upload --url "$ORTHANC_URL" --out "$STACK_DIR/dicom" >&2 ||
        die "upload to Orthanc failed"
}

# --- MONAI Label --------------------------------------------------------------------------------------------
start_monailabel() {
    [ -f "$MONAILABEL_APP/main.py" ] || die "no MONAI Label app at $MONAILABEL_APP (main.py); use --no-monailabel"
    "$PYTHON" -c "import monailabel" 2>/dev/null || die "monailabel is not installed for $PYTHON (make install)"
    if pid_alive "$STACK_DIR/monailabel.pid" monailabel; then
        log "MONAI Label already running (PID $(cat "$STACK_DIR/monailabel.pid"))"
    else
        port_in_use "$MONAILABEL_PORT" && die "port $MONAILABEL_PORT is taken by another process (set MONAILABEL_PORT)"
        mkdir -p "$STACK_DIR/monailabel-cache"
        log "starting MONAI Label on 127.0.0.1:$MONAILABEL_PORT (log: $STACK_DIR/monailabel.log)"
        # the datastore lists CT and MR series (MONAI Label's default is CT only; OHIF's study list comes from
        # Orthanc's QIDO through the proxy either way). Orthanc's QIDO takes "CT,MR" as a list, not "CT\\MR".
        local search_filter='{"Modality": "CT,MR"}'
        MONAI_LABEL_DICOMWEB_SEARCH_FILTER="${MONAI_LABEL_DICOMWEB_SEARCH_FILTER:-$search_filter}" \
            MONAI_LABEL_DATASTORE_CACHE_PATH="$STACK_DIR/monailabel-cache" \
            HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
            setsid "$PYTHON" -m monailabel.main start_server --app "$MONAILABEL_APP" \
            --studies "$ORTHANC_URL/dicom-web" --conf models medpclip \
            --host 127.0.0.1 --port "$MONAILABEL_PORT" >"$STACK_DIR/monailabel.log" 2>&1 </dev/null &
        echo $! >"$STACK_DIR/monailabel.pid"
    fi
    wait_for "$MONAILABEL_URL/info/" "$STACK_TIMEOUT" "$STACK_DIR/monailabel.pid" monailabel "$STACK_DIR/monailabel.log"
}

cmd_start() {
    local with_monailabel=1
    for arg in "$@"; do
        case "$arg" in
            --no-monailabel) with_monailabel=0 ;;
            *) die "unknown option $arg" ;;
        esac
    done
    cmd_install
    start_orthanc
    if [ "$with_monailabel" = 1 ]; then start_monailabel; fi
    cmd_status || true
}

cmd_stop() {
    stop_one "$STACK_DIR/chromedriver.pid" chromedriver  # written by the browser tests (tests/e2e/conftest.py)
    stop_one "$STACK_DIR/monailabel.pid" monailabel
    stop_one "$STACK_DIR/orthanc.pid" Orthanc
}

cmd_status() {
    local rc=0 name pidfile url
    for name in Orthanc monailabel; do
        if [ "$name" = Orthanc ]; then
            pidfile="$STACK_DIR/orthanc.pid" url="$ORTHANC_URL/system"
        else
            pidfile="$STACK_DIR/monailabel.pid" url="$MONAILABEL_URL/info/"
        fi
        if pid_alive "$pidfile" "$name"; then
            if http_ok "$url"; then
                echo "$name: running (PID $(cat "$pidfile")), $url answers"
            else
                echo "$name: running (PID $(cat "$pidfile")), $url does not answer yet"
                rc=3
            fi
        else
            echo "$name: stopped"
            rc=3
        fi
    done
    [ "$rc" = 0 ] && echo "OHIF: $MONAILABEL_URL/ohif/"
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start [--no-monailabel]|stop|status" >&2; exit 2 ;;
esac
