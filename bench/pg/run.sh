#!/usr/bin/env bash
# pgbench against PostgreSQL directly, through pgbouncer (session mode) and through the
# countersign gate, one after another in one run; prints TPS and latency for each and the
# ratios to direct, and the CPU time the proxy (pgbouncer or the gateway) spent per
# transaction. Read-only (-S), 1 and 8 clients, simple and prepared protocol.
#
#   bench/pg/run.sh            # DURATION=10 CLIENTS="1 8" MODES="simple prepared"
#
# Needs the local PostgreSQL on 127.0.0.1:5432 with trust authentication (as on the dev
# machines); installs pgbouncer from Debian if missing and builds the release binary.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 8"}
MODES=${MODES:-"simple prepared"}
SCALE=${SCALE:-10}
PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
BOUNCER_PORT=6439
GATE_PORT=6549
API_PORT=8499
DB=countersign_bench

root=$(cd "$(dirname "$0")/../.." && pwd)
# BENCH_DIR=/dev/shm puts the gateway's store on tmpfs, to see what durability costs.
work=$(mktemp -d "${BENCH_DIR:-/tmp}/countersign-pgbench.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v pgbouncer >/dev/null; then
    echo "installing pgbouncer..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
fi
chown postgres "$work" 2>/dev/null || true

echo "building the release binary..." >&2
(cd "$root" && cargo build --release --locked -q -p countersign)
bin=${CARGO_TARGET_DIR:-$root/target}/release/countersign

psql_admin() { psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"; }
psql_admin -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
pgbench -q -i -s "$SCALE" -h "$PG_HOST" -p "$PG_PORT" -U postgres "$DB" >/dev/null 2>&1

# pgbouncer, session pooling, trusting its one user like the server does.
cat >"$work/pgbouncer.ini" <<INI
[databases]
$DB = host=$PG_HOST port=$PG_PORT dbname=$DB
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
echo '"postgres" ""' >"$work/userlist.txt"
chown postgres "$work"/pgbouncer.ini "$work"/userlist.txt 2>/dev/null || true
if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- pgbouncer "$work/pgbouncer.ini" >/dev/null 2>&1 &
else
    pgbouncer "$work/pgbouncer.ini" >/dev/null 2>&1 &
fi
pids+=($!)

# countersign with one gate in front of the same database; the example policies let agents read.
token=$("$bin" token new --kind agent --id bench-agent --groups agents 2>/dev/null | sed -n 1p)
hashes=$(printf '%s\n' "$token" | "$bin" token hash)
# JOURNAL=0 leaves the audit journal out: reads then wait for the store's commit.
# JOURNAL_SYNC_EVERY and JOURNAL_COMMIT_EVERY set how often the journal is synced to disk
# (default 10ms) and how long journaled records wait for their commit (default 200ms).
journal_line=""
if [ "${JOURNAL:-1}" = 1 ]; then
    journal_line="journal = \"$work/journal\"
journal_sync_every = \"${JOURNAL_SYNC_EVERY:-10ms}\"
journal_commit_every = \"${JOURNAL_COMMIT_EVERY:-200ms}\""
fi
cat >"$work/countersign.toml" <<TOML
[server]
listen = "127.0.0.1:$API_PORT"
public_url = "http://127.0.0.1:$API_PORT"

[store]
url = "sqlite://$work/db.sqlite"

[audit]
key_file = "$work/audit.key"
$journal_line

[[principals]]
kind = "agent"
id = "bench-agent"
groups = ["agents"]
$hashes

[[gates.postgres]]
name = "prod"
listen = "127.0.0.1:$GATE_PORT"
upstream = "postgres://postgres@$PG_HOST:$PG_PORT/$DB"
TOML
RUST_LOG=warn "$bin" serve --config "$work/countersign.toml" 2>"$work/countersign.log" &
pids+=($!)
gate_pid=$!

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}
wait_port "$BOUNCER_PORT"
wait_port "$GATE_PORT"

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run TARGET MODE CLIENTS -> "tps median_latency_us proxy_cpu_us_per_transaction"
# (the last is "-" for direct, where there is no proxy).
run() {
    local target=$1 mode=$2 clients=$3 port user proxy=""
    case $target in
        direct) port=$PG_PORT user=postgres ;;
        pgbouncer) port=$BOUNCER_PORT user=postgres proxy=$(cat "$work/pgbouncer.pid") ;;
        gate) port=$GATE_PORT user=bench-agent proxy=$gate_pid ;;
    esac
    local before=0
    [ -n "$proxy" ] && before=$(cpu_ticks "$proxy")
    local prefix="$work/log-$target-$mode-$clients"
    local out
    out=$(cd "$work" && PGPASSWORD="$token" pgbench -n -S -M "$mode" -c "$clients" -j "$clients" \
        -T "$DURATION" -h 127.0.0.1 -p "$port" -U "$user" -l --log-prefix="$prefix" "$DB" 2>&1) || {
        echo "pgbench against $target failed:" >&2
        echo "$out" >&2
        exit 1
    }
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
    # Per-transaction log: the third field is the latency in microseconds.
    local median
    median=$(cat "$prefix".* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    rm -f "$prefix".*
    local cpu=-
    if [ -n "$proxy" ]; then
        local transactions
        transactions=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        cpu=$(awk -v t="$(( $(cpu_ticks "$proxy") - before ))" -v hz="$(getconf CLK_TCK)" -v n="$transactions" \
            'BEGIN { printf "%.0f", t * 1e6 / hz / n }')
    fi
    echo "$tps $median $cpu"
}

printf '\npgbench -S, %ss per run, scale %s, %s\n\n' "$DURATION" "$SCALE" "$(nproc) cores"
printf '%-9s %-8s %-10s %12s %12s %10s %14s %14s\n' mode clients target tps "median µs" "tps/direct" "added µs (p50)" "proxy CPU µs/tx"
for mode in $MODES; do
    for clients in $CLIENTS; do
        read -r d_tps d_lat _ < <(run direct "$mode" "$clients")
        for target in direct pgbouncer gate; do
            if [ "$target" = direct ]; then
                tps=$d_tps lat=$d_lat cpu=-
            else
                read -r tps lat cpu < <(run "$target" "$mode" "$clients")
            fi
            awk -v m="$mode" -v c="$clients" -v t="$target" -v tps="$tps" -v lat="$lat" -v dt="$d_tps" -v dl="$d_lat" -v cpu="$cpu" \
                'BEGIN { printf "%-9s %-8s %-10s %12.0f %12d %9.0f%% %14d %14s\n", m, c, t, tps, lat, 100*tps/dt, lat-dl, cpu }'
        done
    done
done
events=$("$bin" audit verify --store --config "$work/countersign.toml" 2>&1 | grep -v "^note" | tail -1 || true)
printf '\naudit log after the run: %s\n' "$events"
