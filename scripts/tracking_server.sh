#!/usr/bin/env bash
# A shared MLflow tracking server on PostgreSQL, all of it in one data folder (docs/scaling-out.md, "A shared
# tracking server on PostgreSQL"):
#
#   bash scripts/tracking_server.sh start  DATA_DIR [--pg-port 5433] [--port 5000] [--workers 4]
#   bash scripts/tracking_server.sh status DATA_DIR
#   bash scripts/tracking_server.sh stop   DATA_DIR
#
# DATA_DIR/pg         the PostgreSQL cluster (initdb on the first start), database and role `mlflow`
# DATA_DIR/artifacts  the run artifacts (the server proxies uploads and downloads: --artifacts-destination)
# DATA_DIR/socket     PostgreSQL's Unix socket (administration only; MLflow connects over 127.0.0.1)
# DATA_DIR/logs       postgresql.log, mlflow.log, initdb.log
# DATA_DIR/mlflow.pid, DATA_DIR/server.env   the running server's PID; the ports and workers of the
#                                            last start, which a start without options reuses
# DATA_DIR/db_password                  the role's password when none is configured (mode 600)
#
# The role's password: $FER_TRACKING_DB_PASSWORD, else `tracking_db: {password: ...}` in
# conf/local/credentials.yml of the project (this repository, or $FER_PROJECT_DIR), else one
# generated on the first start and kept in DATA_DIR/db_password. It is set again on every start.
# (This is the server's own password, read by this script only. A kedro-mlflow login for
# `kedro run --env team` is another matter: conf/team/credentials.yml, see conf/team/mlflow.yml.)
# Both servers listen on 127.0.0.1 only. MLflow runs with $PYTHON (default: the repository's
# .venv/bin/python), which needs mlflow and psycopg2 (pip install -e ".[scale]").
# Run as root, PostgreSQL runs as the `postgres` user (PostgreSQL refuses root; or
# $FER_TRACKING_PG_USER), and so does MLflow when that user can run $PYTHON; DATA_DIR's parent
# folders must then be searchable by that user. A $PYTHON that user cannot run (a venv whose
# interpreter lies under /root, mode 0700) leaves MLflow running as root, with a warning.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [[ "$PYTHON" != /* ]]; then  # the server starts from /: a relative path must not change meaning
  if [[ "$PYTHON" == */* ]]; then PYTHON="$PWD/$PYTHON"; else PYTHON="$(command -v -- "$PYTHON" || echo "$PYTHON")"; fi
fi
PROJECT_DIR="${FER_PROJECT_DIR:-$REPO}"
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true

DB_NAME=mlflow
DB_ROLE=mlflow
DEFAULT_PG_PORT=5433   # 5432 stays free for a system PostgreSQL
DEFAULT_PORT=5000
DEFAULT_WORKERS=4
START_TIMEOUT="${FER_TRACKING_START_TIMEOUT:-180}"  # seconds until /health must answer
STOP_GRACE="${FER_TRACKING_STOP_GRACE:-15}"         # seconds between SIGTERM and SIGKILL

umask 077

# Runs argv[2:] in a new session (its own process group, no terminal: a closed terminal or a
# Ctrl-C elsewhere does not reach it) under the same PID, as `exec` does; as the user argv[1]
# when it is not empty (root only). Dropping privileges here, rather than through runuser or su,
# keeps the PID: runuser and su fork and wait, so $! would name them instead of the server.
# From /, which any user may enter (the caller's folder may be closed to the user it runs as).
NEW_SESSION='import os, sys
try:
    os.setsid()
except OSError:
    pass
if sys.argv[1]:
    import pwd
    user = pwd.getpwnam(sys.argv[1])
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
os.chdir("/")
os.execv(sys.argv[2], sys.argv[2:])'

die() {
  echo "tracking_server.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '5,7p' "${BASH_SOURCE[0]}" | sed 's/^#  //' >&2
  exit 2
}

# ---- PostgreSQL: binaries, the user it runs as ---------------------------------------------
find_pg_bindir() {
  local dir candidates=()
  [[ -n "${PG_BINDIR:-}" ]] && candidates+=("$PG_BINDIR")
  if command -v pg_config >/dev/null 2>&1; then
    candidates+=("$(pg_config --bindir 2>/dev/null || true)")
  fi
  # Debian/Ubuntu: /usr/lib/postgresql/<version>/bin, newest first
  while IFS= read -r dir; do candidates+=("$dir"); done \
    < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r)
  if command -v initdb >/dev/null 2>&1; then
    candidates+=("$(dirname "$(readlink -f "$(command -v initdb)")")")
  fi
  for dir in "${candidates[@]}"; do
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/psql" ]]; then
      echo "$dir"
      return 0
    fi
  done
  die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them, e.g. on Debian/Ubuntu:
  sudo apt-get install postgresql
or point PG_BINDIR at the folder that holds them."
}

setup_pg_user() {
  if [[ "$(id -u)" -eq 0 ]]; then
    PG_OS_USER="${FER_TRACKING_PG_USER:-postgres}"
    id "$PG_OS_USER" >/dev/null 2>&1 || die "running as root, but PostgreSQL refuses to run as root and \
there is no '$PG_OS_USER' user to run it as (apt-get install postgresql creates it; or set FER_TRACKING_PG_USER)"
  else
    PG_OS_USER="$(id -un)"
  fi
}

# Run a command as the user PostgreSQL runs as (from /, which that user can always enter).
as_pg() {
  if [[ "$(id -u)" -ne 0 ]]; then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    # bash, not sh: printf %q may quote as $'...', which dash does not read
    (cd / && su -s /bin/bash "$PG_OS_USER" -c "$(printf '%q ' "$@")")
  fi
}

pg_running() {
  [[ -f "$PGDATA/PG_VERSION" ]] || return 1
  as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

psql_admin() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -d postgres "$@"
}

# ---- processes -----------------------------------------------------------------------------
alive() {  # a zombie counts as gone
  local pid="$1" state
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# Guards against a stale PID file naming a PID that was reused: true only for the `mlflow
# server` this script started on this DATA_DIR, its command line holding `-m mlflow server` and
# `--artifacts-destination DATA_DIR/artifacts` as whole arguments.
is_mlflow() {
  local pid="$1" args
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  args="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline")" || return 1  # gone meanwhile
  args=$'\n'"$args"$'\n'
  [[ "$args" == *$'\n-m\nmlflow\nserver\n'* \
    && "$args" == *$'\n--artifacts-destination\n'"$DATA_DIR/artifacts"$'\n'* ]]
}

# A process below that server (uvicorn and its workers, whose command lines do not say so): it
# inherits FER_TRACKING_DATA_DIR=DATA_DIR, which the script sets for the server only. Another
# user's environment cannot be read (unless we are root): such a process never matches.
is_server_child() {
  local pid="$1" vars
  [[ -r "/proc/$pid/environ" ]] || return 1
  vars="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ")" || return 1
  [[ $'\n'"$vars"$'\n' == *$'\n'"FER_TRACKING_DATA_DIR=$DATA_DIR"$'\n'* ]]
}

descendants() {  # every process below $1, depth first
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$child"
    descendants "$child"
  done
}

# The server started from PID_FILE: its process, every process below it, and the rest of the
# process group it leads (workers whose parent died), all listed before anyone is signalled, so
# that no orphan is lost. Nothing when the PID is not (or no longer) an MLflow server's.
server_processes() {
  local pid member leader=0 group=()
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  alive "$pid" && is_mlflow "$pid" && leader=1
  mapfile -t group < <(pgrep -g "$pid" 2>/dev/null || true)
  if (( ! leader )); then  # its group counts only when a process of this server is in it
    for member in "${group[@]}"; do
      if is_mlflow "$member" || is_server_child "$member"; then leader=1; fi
    done
    (( leader )) || return 0
  fi
  { alive "$pid" && echo "$pid" && descendants "$pid"
    for member in "${group[@]}"; do echo "$member"; descendants "$member"; done
  } | sort -un
}

# SIGTERM the given processes, SIGKILL whatever is left after the grace period.
kill_all() {
  local pid waited=0 left pids=("$@")
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while :; do
    left=()
    for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
    [[ ${#left[@]} -eq 0 ]] && return 0
    if (( waited >= STOP_GRACE * 5 )); then
      echo "still running after ${STOP_GRACE}s, SIGKILL: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      return 0
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

mlflow_pid() {  # the running server's PID, or nothing
  local pid
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && is_mlflow "$pid"; then
    echo "$pid"
  fi
}

port_free() {  # as uvicorn binds: SO_REUSEADDR, so that TIME_WAIT left by a last run does not count
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
EOF
}

healthy() {  # straight to 127.0.0.1: an http_proxy in the environment must not get the request
  if command -v curl >/dev/null 2>&1; then
    curl --noproxy '*' -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null
  else
    "$PYTHON" -c "import urllib.request as u
u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:$PORT/health', timeout=5)" 2>/dev/null
  fi
}

# The user MLflow runs as: ours; as root, PostgreSQL's user when it can run $PYTHON with mlflow
# and psycopg2. A venv made from an interpreter under /root (pyenv's, as on this project's
# machines) cannot be run by it: /root is 0700. Then MLflow stays root, with a warning, rather
# than not starting: copying or re-creating the venv is the operator's call, not this script's.
# PostgreSQL's user rather than `nobody`: it exists wherever the script can run at all, and the
# data folder is already laid out for it (DATA_DIR and logs/ 0711).
setup_mlflow_user() {
  local why
  MLFLOW_OS_USER="$(id -un)"
  [[ "$(id -u)" -eq 0 ]] || return 0
  if why="$(as_pg "$PYTHON" -c 'import mlflow, psycopg2' 2>&1)"; then
    MLFLOW_OS_USER="$PG_OS_USER"
  else
    why="$(printf '%s\n' "$why" | grep -v '^[[:space:]]*$' | tail -n 1)"
    echo "WARNING: MLflow runs as root: the '$PG_OS_USER' user cannot run $PYTHON with mlflow and" \
      "psycopg2 (${why:-no output}). To run it unprivileged, point PYTHON at an interpreter and venv" \
      "that user can read (e.g. under /opt or /srv, not /root)." >&2
  fi
}

# ---- the role's password -------------------------------------------------------------------
load_password() {
  local creds="$PROJECT_DIR/conf/local/credentials.yml"
  if [[ -n "${FER_TRACKING_DB_PASSWORD:-}" ]]; then
    DB_PASSWORD="$FER_TRACKING_DB_PASSWORD"
    PASSWORD_SOURCE="\$FER_TRACKING_DB_PASSWORD"
    return
  fi
  if [[ -f "$creds" ]]; then
    DB_PASSWORD="$("$PYTHON" - "$creds" <<'EOF'
import sys
import yaml
with open(sys.argv[1], encoding="utf-8") as handle:
    entry = (yaml.safe_load(handle) or {}).get("tracking_db") or {}
password = entry.get("password") if isinstance(entry, dict) else None
if password is not None:
    if str(password).startswith("${"):
        sys.exit("tracking_db.password in credentials.yml is an interpolation, which this script does "
                 "not resolve: set FER_TRACKING_DB_PASSWORD instead")
    sys.stdout.write(str(password))
EOF
)" || die "could not read $creds"
    if [[ -n "$DB_PASSWORD" ]]; then
      PASSWORD_SOURCE="$creds (tracking_db.password)"
      return
    fi
  fi
  local file="$DATA_DIR/db_password"
  if [[ ! -s "$file" ]]; then
    "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$file"
  fi
  chmod 600 "$file"
  DB_PASSWORD="$(head -n1 "$file")"
  PASSWORD_SOURCE="$file (generated)"
}

# ---- commands ------------------------------------------------------------------------------
resolve_data_dir() {
  [[ -n "${1:-}" ]] || usage
  DATA_DIR="$(realpath -m -- "$1")"
  [[ "$DATA_DIR" != *"'"* ]] || die "DATA_DIR must not contain a single quote: $DATA_DIR"
  PGDATA="$DATA_DIR/pg"
  SOCKET_DIR="$DATA_DIR/socket"
  LOG_DIR="$DATA_DIR/logs"
  PID_FILE="$DATA_DIR/mlflow.pid"
  SETTINGS_FILE="$DATA_DIR/server.env"
  PG_PORT="" PORT="" WORKERS=""
  if [[ -f "$SETTINGS_FILE" ]]; then
    PG_PORT="$(sed -n 's/^PG_PORT=\([0-9]*\)$/\1/p' "$SETTINGS_FILE")"
    PORT="$(sed -n 's/^MLFLOW_PORT=\([0-9]*\)$/\1/p' "$SETTINGS_FILE")"
    WORKERS="$(sed -n 's/^WORKERS=\([0-9]*\)$/\1/p' "$SETTINGS_FILE")"
  fi
  STORED_PG_PORT="$PG_PORT" STORED_PORT="$PORT"
  PG_PORT="${PG_PORT:-$DEFAULT_PG_PORT}" PORT="${PORT:-$DEFAULT_PORT}" WORKERS="${WORKERS:-$DEFAULT_WORKERS}"
}

cmd_start() {
  local pid pids
  resolve_data_dir "${1:-}"
  shift
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --pg-port) PG_PORT="${2:?--pg-port needs a value}"; shift 2 ;;
      --port) PORT="${2:?--port needs a value}"; shift 2 ;;
      --workers) WORKERS="${2:?--workers needs a value}"; shift 2 ;;
      *) usage ;;
    esac
  done
  local value
  for value in "$PG_PORT" "$PORT"; do
    [[ "$value" =~ ^[0-9]{1,5}$ ]] && (( 10#$value >= 1 && 10#$value <= 65535 )) \
      || die "a port is a number from 1 to 65535, not '$value'"
  done
  [[ "$WORKERS" =~ ^[0-9]{1,4}$ ]] && (( 10#$WORKERS >= 1 )) || die "--workers is a number of at least 1, not '$WORKERS'"
  PG_PORT=$((10#$PG_PORT)) PORT=$((10#$PORT)) WORKERS=$((10#$WORKERS))
  [[ "$PG_PORT" != "$PORT" ]] || die "PostgreSQL and MLflow cannot share port $PORT"
  [[ -x "$PYTHON" ]] || die "no Python at $PYTHON: set PYTHON to the interpreter of the project's venv"
  "$PYTHON" -c 'import mlflow, psycopg2' 2>/dev/null \
    || die "$PYTHON lacks mlflow or psycopg2: pip install -e \".[scale]\" in the project's venv"
  PG_BIN="$(find_pg_bindir)"
  setup_pg_user
  setup_mlflow_user
  local socket_file="$SOCKET_DIR/.s.PGSQL.$PG_PORT"
  (( ${#socket_file} < 100 )) || die "DATA_DIR is too long for a Unix socket path ($socket_file): choose a shorter one"

  # Folders: PostgreSQL's own belong to the user it runs as; the rest stay private to us.
  if [[ ! -d "$DATA_DIR" ]]; then
    (umask 022 && mkdir -p "$DATA_DIR")  # parent folders that others may pass through
    chmod 700 "$DATA_DIR"
  fi
  mkdir -p "$LOG_DIR" "$DATA_DIR/artifacts" "$PGDATA" "$SOCKET_DIR"
  touch "$LOG_DIR/postgresql.log" "$LOG_DIR/mlflow.log"
  if [[ "$(id -u)" -eq 0 ]]; then
    chmod 711 "$DATA_DIR" "$LOG_DIR"  # the postgres user may pass through, not list
    chown "$PG_OS_USER:" "$PGDATA" "$SOCKET_DIR" "$LOG_DIR/postgresql.log"
    if [[ "$MLFLOW_OS_USER" != root ]]; then
      # MLflow's artifacts and log are its own; so is anything a server run as root left there.
      find "$DATA_DIR/artifacts" "$LOG_DIR/mlflow.log" ! -user "$MLFLOW_OS_USER" \
        -exec chown "$MLFLOW_OS_USER:" {} +
    fi
    as_pg test -w "$PGDATA" -a -w "$LOG_DIR/postgresql.log" || die "the '$PG_OS_USER' user cannot reach \
$DATA_DIR: one of its parent folders is not searchable by it (a 0700 home, or pytest's /tmp/pytest-of-root). \
Choose a data folder it can reach (e.g. /srv/fer-tracking) or grant search permission (chmod o+x) on the parents."
  fi
  chmod 700 "$PGDATA" "$SOCKET_DIR" "$DATA_DIR/artifacts"

  load_password  # first: a password that cannot be read stops the start before anything runs

  pid="$(mlflow_pid)"
  if pg_running && [[ -n "$pid" ]]; then
    if [[ "$PG_PORT:$PORT" != "$STORED_PG_PORT:$STORED_PORT" ]]; then
      die "already running on ports $STORED_PG_PORT (PostgreSQL) and $STORED_PORT (MLflow):" \
        "stop it first to change them"
    fi
    echo "Already running (PostgreSQL on 127.0.0.1:$STORED_PG_PORT, MLflow PID $pid)."
    echo "Tracking URI: http://127.0.0.1:${STORED_PORT:-$PORT}"
    return 0
  fi
  if pg_running && [[ -n "$STORED_PG_PORT" && "$STORED_PG_PORT" != "$PG_PORT" ]]; then
    die "PostgreSQL already runs on port $STORED_PG_PORT for $DATA_DIR: stop it first to change the port"
  fi
  # Both ports, before anything starts (the MLflow one again below, once leftovers are gone).
  if ! pg_running && ! port_free "$PG_PORT"; then
    die "port $PG_PORT on 127.0.0.1 (PostgreSQL) is taken, by another PostgreSQL or another program: \
pass another with --pg-port"
  fi
  if [[ -z "$(server_processes)" ]] && ! port_free "$PORT"; then
    die "port $PORT on 127.0.0.1 (MLflow) is taken by another program: pass another with --port"
  fi

  if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
    [[ -z "$(ls -A "$PGDATA")" ]] || die "$PGDATA is not empty but holds no PostgreSQL cluster"
    echo "Creating the PostgreSQL cluster in $PGDATA ($PG_BIN, run as $PG_OS_USER)..."
    if ! as_pg "$PG_BIN/initdb" -D "$PGDATA" --no-locale -E UTF8 --auth-local=peer \
      --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1; then
      tail -n 30 "$LOG_DIR/initdb.log" >&2
      die "initdb failed (log: $LOG_DIR/initdb.log)"
    fi
  fi

  if ! pg_running; then
    echo "Starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $LOG_DIR/postgresql.log)..."
    if ! as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -w -t 60 -l "$LOG_DIR/postgresql.log" \
      -o "-h 127.0.0.1 -k '$SOCKET_DIR' -p $PG_PORT" >/dev/null; then
      tail -n 30 "$LOG_DIR/postgresql.log" >&2
      die "PostgreSQL did not start (log: $LOG_DIR/postgresql.log)"
    fi
  fi
  printf 'PG_PORT=%s\nMLFLOW_PORT=%s\nWORKERS=%s\n' "$PG_PORT" "$PORT" "$WORKERS" >"$SETTINGS_FILE"

  # The database and its role, the password set from its source on every start. SQL goes in on
  # stdin, so the password is on no command line.
  echo "Database '$DB_NAME', role '$DB_ROLE'; password from $PASSWORD_SOURCE"
  psql_admin >/dev/null <<EOF
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_ROLE') THEN CREATE ROLE $DB_ROLE LOGIN; END IF;
END \$\$;
ALTER ROLE $DB_ROLE WITH LOGIN PASSWORD '${DB_PASSWORD//\'/\'\'}';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_ROLE'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
EOF

  mapfile -t pids < <(server_processes)
  if [[ ${#pids[@]} -gt 0 ]]; then  # workers of a server that died: they hold the port
    echo "Stopping what is left of the last MLflow server (PIDs ${pids[*]})..."
    kill_all "${pids[@]}"
  fi
  port_free "$PORT" || die "port $PORT on 127.0.0.1 (MLflow) is taken by another program: pass another with --port"
  local quoted
  quoted="$(printf '%s' "$DB_PASSWORD" \
    | "$PYTHON" -c 'import sys, urllib.parse; sys.stdout.write(urllib.parse.quote(sys.stdin.read(), safe=""))')"
  echo "Starting MLflow on http://127.0.0.1:$PORT as $MLFLOW_OS_USER (log: $LOG_DIR/mlflow.log)..."
  # The store URI (with the password) goes in the environment, which only the user it runs as
  # (and root) can read, not on the command line (`ps`). mlflow server reads MLFLOW_BACKEND_STORE_URI. The driver is
  # named: SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://; [scale] installs psycopg2.
  # MLflow 3's job runner (GenAI judges, trace rollups; seven huey consumers) is off unless asked
  # for: this project does not use it, and it would triple the start time on a small machine.
  # FER_TRACKING_DATA_DIR marks the server's processes for is_server_child.
  local drop_to=""
  [[ "$(id -u)" -eq 0 && "$MLFLOW_OS_USER" != root ]] && drop_to="$MLFLOW_OS_USER"
  MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://$DB_ROLE:$quoted@127.0.0.1:$PG_PORT/$DB_NAME" \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}" \
    FER_TRACKING_DATA_DIR="$DATA_DIR" \
    nohup "$PYTHON" -c "$NEW_SESSION" "$drop_to" "$PYTHON" -m mlflow server \
    --artifacts-destination "$DATA_DIR/artifacts" \
    --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
    >>"$LOG_DIR/mlflow.log" 2>&1 </dev/null &
  pid=$!  # the same process once NEW_SESSION has exec'd: the server, leader of its own process group
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT)) reason
  until healthy; do
    if ! alive "$pid" || (( SECONDS >= deadline )); then
      echo "--- end of $LOG_DIR/mlflow.log ---" >&2
      tail -n 40 "$LOG_DIR/mlflow.log" >&2
      if alive "$pid"; then
        mapfile -t pids < <(server_processes)
        kill_all "${pids[@]}" >&2
        reason="did not answer on http://127.0.0.1:$PORT/health within ${START_TIMEOUT}s"
      else
        reason="exited"
      fi
      rm -f "$PID_FILE"
      die "the MLflow server $reason (log: $LOG_DIR/mlflow.log). PostgreSQL still runs: \
'$0 stop $DATA_DIR' stops it"
    fi
    sleep 1
  done
  echo "MLflow tracking server running (PID $pid, user $MLFLOW_OS_USER), backend PostgreSQL 127.0.0.1:$PG_PORT/$DB_NAME," \
    "artifacts in $DATA_DIR/artifacts"
  echo "Tracking URI: http://127.0.0.1:$PORT"
}

cmd_stop() {
  local pids
  resolve_data_dir "${1:-}"
  [[ $# -le 1 ]] || usage
  mapfile -t pids < <(server_processes)
  if [[ ${#pids[@]} -gt 0 ]]; then
    echo "Stopping MLflow (PIDs ${pids[*]}: the server and its workers)..."
    kill_all "${pids[@]}"
  else
    echo "MLflow is not running."
  fi
  rm -f "$PID_FILE"
  if [[ -f "$PGDATA/PG_VERSION" ]]; then
    PG_BIN="$(find_pg_bindir)"
    setup_pg_user
    if pg_running; then
      echo "Stopping PostgreSQL..."
      as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 >/dev/null
    else
      echo "PostgreSQL is not running."
    fi
  fi
}

cmd_status() {
  local pid code=0
  resolve_data_dir "${1:-}"
  [[ $# -le 1 ]] || usage
  if [[ -f "$PGDATA/PG_VERSION" ]]; then
    PG_BIN="$(find_pg_bindir)"
    setup_pg_user
  fi
  if pg_running; then
    echo "PostgreSQL: running on 127.0.0.1:$PG_PORT ($PGDATA)"
  else
    echo "PostgreSQL: stopped"
    code=3
  fi
  pid="$(mlflow_pid)"
  if [[ -n "$pid" ]] && healthy; then
    echo "MLflow: running (PID $pid), tracking URI http://127.0.0.1:$PORT"
  elif [[ -n "$pid" ]]; then
    echo "MLflow: PID $pid runs but http://127.0.0.1:$PORT/health does not answer"
    code=3
  else
    echo "MLflow: stopped"
    code=3
  fi
  return "$code"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
