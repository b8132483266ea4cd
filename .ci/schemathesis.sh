#!/usr/bin/env bash
# CI: schemathesis against `outreach serve`, every check on every operation of
# /openapi.json (issue 17 §4: the OpenAPI document is the whole truth). Fails when
# schemathesis reports any failure. Called by .ci/run after the tests.
#
# 1. Builds target/release/outreach (after `cargo test --release` only this crate is
#    rebuilt, without the tests' `failpoints` feature), or takes OUTREACH_BIN.
# 2. Installs schemathesis 4.32.5 from PyPI, pinned with everything it installs
#    (.ci/schemathesis-requirements.txt), into a venv under target/schemathesis/; the venv is
#    kept while it holds exactly those pins.
# 3. Makes a small demo warehouse (2,000 survivors, 5 programs, every quarter published, in
#    seconds), a researcher's token with an allocation, and serves it on a free port of
#    loopback with the rate limits raised: a 429 is documented on every operation, but a
#    fuzzer answered 429 tests nothing behind the limiter.
# 4. Runs schemathesis with the token, so that the researcher routes are tested past their
#    401 (the `ignored_auth` check still sends requests without it and with a wrong one).
#    .ci/schemathesis.toml says which check accepts what more on which operation, and why.
#
# Environment: OUTREACH_BIN, a binary to test instead of building one;
# SCHEMATHESIS_MAX_EXAMPLES, test cases per operation and phase (default 100);
# SCHEMATHESIS_SEED (default fixed, so that a commit's run can be replayed; set another to
# explore). Needs python3 with venv (Debian's python3-venv is installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=4.32.5
work=$root/target/schemathesis
venv=$work/venv
requirements=$root/.ci/schemathesis-requirements.txt
examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}
seed=${SCHEMATHESIS_SEED:-20261206}

if [ -n "${OUTREACH_BIN:-}" ]; then
    bin=$(realpath "$OUTREACH_BIN")
else
    cargo build --release --bin outreach
    bin=$root/target/release/outreach
fi
mkdir -p "$work"

if ! cmp -s "$requirements" "$venv/ci-requirements.txt"; then
    echo "ci: installing schemathesis $version into $venv"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 leaves venv (ensurepip) to a package of its own.
        if command -v apt-get >/dev/null; then
            SUDO=""
            [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo -n"
            echo "ci: installing python3-venv"
            { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends python3-venv; } >/dev/null 2>&1 ||
                echo "ci: python3-venv could not be installed"
        fi
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/ci-requirements.txt"
fi
if [ "$("$venv/bin/schemathesis" --version)" != "schemathesis, version $version" ]; then
    echo "ci: $venv does not hold schemathesis $version" >&2
    exit 1
fi

rm -rf "$work/demo" "$work/run" "$work/report"
mkdir -p "$work/run"
"$bin" --quiet demo --dir "$work/demo" --persons 2000 --programs 5 --no-serve >/dev/null
wh=$work/demo/warehouse
token=$("$bin" --quiet tokens create --warehouse "$wh" --role researcher --name schemathesis 2>/dev/null)
"$bin" --quiet budget allocate --warehouse "$wh" researcher:schemathesis 0.2 >/dev/null 2>&1

"$bin" --quiet serve --warehouse "$wh" --addr 127.0.0.1:0 \
    --per-ip-per-second 1e6 --per-ip-burst 100000 \
    --per-token-per-minute 1e6 --per-token-burst 100000 \
    >"$work/serve.out" 2>"$work/access.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

# The address it bound (it prints it once it accepts connections), then /healthz: 200 once
# every stored publication reads.
base=""
healthy=""
for _ in $(seq 1 300); do
    if ! kill -0 "$server" 2>/dev/null; then
        echo "ci: outreach serve exited; its log:" >&2
        cat "$work/access.log" >&2
        exit 1
    fi
    [ -n "$base" ] || base=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/serve.out" | head -n 1 || true)
    if [ -n "$base" ] && "$venv/bin/python" -c \
        'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$base/healthz" 2>/dev/null; then
        healthy=1
        break
    fi
    sleep 0.1
done
[ -n "$healthy" ] || {
    echo "ci: ${base:-outreach serve}/healthz did not answer 200 within 30 s" >&2
    exit 1
}

# Schemathesis keeps its caches (.hypothesis, .schemathesis) in the working directory.
# One worker: two submissions are planned at a time and a third is a documented 503 `busy`,
# which the `not_a_server_error` check would count; one worker also keeps a run replayable
# from its seed.
cd "$work/run"
if ! "$venv/bin/schemathesis" --config-file "$root/.ci/schemathesis.toml" \
    run "$base/openapi.json" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --generation-database none \
    --header "Authorization: Bearer $token" \
    --report junit --report-dir "$work/report" \
    --no-color; then
    echo "ci: schemathesis $version found failures (seed $seed); JUnit report in $work/report, access log in $work/access.log" >&2
    exit 1
fi
