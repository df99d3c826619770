#!/usr/bin/env bash
# Runs every benchmark and regenerates BENCHMARKS.md's results section and benches/chart.svg.
#
#   benches/run_all.sh            # full run (under 20 minutes on 2 cores, about 13); run on a quiet machine
#   benches/run_all.sh --quick    # smoke run: tiny sizes, checks every bench counts right;
#                                 # its report goes to target/bench-results/, not BENCHMARKS.md
#
# Steps: cargo bench (criterion: counters, locks, seqlock, coord, metrics, channel, map,
# remote, with the scaling sweeps over 1, 2, 4 and 8 processes: ~60 benches of ~2.7 s, about 3
# minutes; the channel's ~44 rows of ~5 s, about 4 minutes; the remote bench's 14 rows and
# engine start-ups, about a minute), the Python multiprocessing
# comparisons (benches/python/compare.py, which runs `shmstate demo`;
# benches/python/channel_queue.py, multiprocessing.Queue; benches/python/manager_dict.py,
# Manager().dict()), then benches/report.py.
#
# The map bench's Redis rows need `redis-server` (the bench starts its own on a free
# loopback port) or SHMSTATE_REDIS_URL=redis://127.0.0.1:PORT; without either they are
# skipped. Installing it is not this script's job: `apt-get install -y redis-server`.
# The remote bench (Redis, etcd and NATS on loopback beside shmstate) likewise starts
# `redis-server`, `etcd` and `nats-server` itself and skips the rows of any not installed:
# `apt-get install -y redis-server etcd-server nats-server`.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [[ "${1:-}" == "--quick" ]]; then quick=1; fi

target="${CARGO_TARGET_DIR:-target}"
results="$target/bench-results"
mkdir -p "$results"
# Stale estimates of renamed or removed benches would otherwise show up in the table.
rm -rf "$target/criterion"

if [[ $quick == 1 ]]; then
    export SHMSTATE_BENCH_QUICK=1
    increments=20000
    messages=2000
    dict_ops=2000
else
    increments=200000
    messages=20000
    dict_ops=20000
fi

if [[ -z "${SHMSTATE_REDIS_URL:-}" ]] && ! command -v redis-server >/dev/null 2>&1; then
    echo "run_all: redis-server not found, the map bench skips its Redis rows" \
        "(install it with: apt-get install -y redis-server)"
fi

# The CLI first: the metrics bench scrapes a `serve-metrics` it starts from
# target/release/shmstate, and the Python comparisons run its `demo`.
cargo build --release -p shmstate-cli

cargo bench --bench counters --bench locks --bench seqlock --bench coord --bench metrics \
    --bench channel --bench map --bench remote 2>&1 | tee "$results/criterion.log"

python3 benches/python/compare.py --processes 2 --increments "$increments" \
    --shmstate-bin "$target/release/shmstate" --json "$results/python.json" \
    | tee "$results/python.log"

python3 benches/python/channel_queue.py --messages "$messages" \
    --json "$results/channel_python.json" 2>&1 | tee "$results/channel_python.log"

python3 benches/python/manager_dict.py --ops "$dict_ops" --json "$results/manager_dict.json" \
    | tee "$results/manager_dict.log"

report=(python3 benches/report.py --criterion "$target/criterion" --python "$results/python.json"
    --channel-python "$results/channel_python.json" --manager-dict "$results/manager_dict.json"
    --log "$results/criterion.log")
if [[ $quick == 1 ]]; then
    # Smoke numbers must not replace the published ones: report into the results directory.
    cp BENCHMARKS.md "$results/BENCHMARKS.quick.md"
    "${report[@]}" --markdown "$results/BENCHMARKS.quick.md" --svg "$results/chart.quick.svg"
else
    "${report[@]}"
fi
