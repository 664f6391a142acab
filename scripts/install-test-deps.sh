#!/usr/bin/env bash
# Installs what `cargo test` drives besides the Rust toolchain, only what is missing (Debian
# packages through apt-get, PyJWT through pip). Run as root, as the tests themselves must be:
# the fault tests make network namespaces.
#
#   scripts/install-test-deps.sh && cargo test
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

# Tools the tests drive, installed only if missing (Debian packages; apt-get works as root).
missing=()
need kill || missing+=(procps)
# tests/faults.rs and tests/resume_netns.rs make hosts in network namespaces (ip netns, veth,
# a bridge) and cut links with nftables rules.
need ip || missing+=(iproute2)
need nft || missing+=(nftables)
need tmux || missing+=(tmux)   # the console's end-to-end test drives it in tmux
# tests/dyndns.rs runs a real BIND (named) and reads it with dig and nsupdate.
need named || [ -x /usr/sbin/named ] || missing+=(bind9)
need dig && need nsupdate || missing+=(bind9-dnsutils)
# tests/service_unit.rs checks the shipped unit with systemd's own parser.
need systemd-analyze || missing+=(systemd)
# tests/metrics.rs runs a real carbon-cache and reads its whisper files with whisper-fetch.
need carbon-cache || missing+=(graphite-carbon)
need whisper-fetch || missing+=(python3-whisper)
# The fuzz step builds libFuzzer (C++) through libfuzzer-sys.
need c++ || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# tests/tokens.rs mints client tokens with PyJWT (and cryptography, for EdDSA), as a game
# backend would. A Python that refuses pip installs outside a virtualenv is told
# to go ahead: this machine exists to run the tests.
if ! python3 -c 'import jwt, cryptography' >/dev/null 2>&1; then
    python3 -m pip install --quiet pyjwt cryptography \
        || python3 -m pip install --quiet --break-system-packages pyjwt cryptography
fi

