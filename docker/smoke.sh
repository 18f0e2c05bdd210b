#!/usr/bin/env bash
# `make docker-smoke`: build ../Dockerfile without a registry and run a batch job inside the image.
#   1. debootstrap a minimal Debian with Python and import it into podman (cached as an image);
#   2. add a virtual environment with the CPU torch (smoke-base.Containerfile), standing in for the CUDA base;
#   3. build the project's Dockerfile on it (BASE_IMAGE build argument);
#   4. run `sparsect batch` on a small sample folder in a build step and check the outputs (smoke_check.py).
# Needs root (debootstrap), debootstrap and podman. SMOKE_FRESH=1 rebuilds everything without caches and keeps
# no intermediate layers (what CI runs: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${SMOKE_SUITE:-bookworm}                      # Debian release; its python3 must match the torch wheel
MIRROR=${SMOKE_MIRROR:-http://deb.debian.org/debian}
TORCH=${SMOKE_TORCH:-torch==2.13.0}
WHEELS=${SMOKE_WHEELS:-/opt/wheels}                 # local wheels (a CPU torch) offered to pip; may be absent
WORK=${SMOKE_WORK:-/var/tmp/sparsect-smoke}
CA_BUNDLE=${SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}   # the host's CA bundle, lent to RUN steps
DEBIAN_IMAGE=localhost/sparsect-smoke-debian:$SUITE
BASE_IMAGE=localhost/sparsect-smoke-base:$SUITE
IMAGE=localhost/sparsect:smoke
BUILD=(podman build --isolation chroot --network host --format docker)   # docker format: HEALTHCHECK is kept

for tool in debootstrap podman; do
    command -v "$tool" >/dev/null || { echo "docker-smoke needs $tool (apt-get install debootstrap podman)" >&2; exit 2; }
done
if ! compgen -G "$WHEELS/torch-*.whl" >/dev/null; then
    echo "docker-smoke: no torch wheel in $WHEELS: pip takes torch from PyPI (a CUDA build of several GB)" >&2
    [ -d "$WHEELS" ] || WHEELS=$(mktemp -d)
fi
[ -f "$CA_BUNDLE" ] && BUILD+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
cache=()
if [ "${SMOKE_FRESH:-0}" = 1 ]; then
    podman rmi -f "$IMAGE" "$BASE_IMAGE" "$DEBIAN_IMAGE" >/dev/null 2>&1 || true
    cache=(--no-cache --layers=false)
fi

seconds() { date +%s.%N; }
t0=$(seconds)
if ! podman image exists "$DEBIAN_IMAGE"; then
    rm -rf "$WORK/rootfs"
    mkdir -p "$WORK"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$WORK/rootfs" "$MIRROR" \
        > "$WORK/debootstrap.log" || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
    tar -C "$WORK/rootfs" -c . | podman import --quiet - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
fi
t1=$(seconds)
"${BUILD[@]}" "${cache[@]}" --quiet -v "$WHEELS:/wheels:ro" --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" \
    --build-arg TORCH="$TORCH" -f docker/smoke-base.Containerfile -t "$BASE_IMAGE" docker >/dev/null
t2=$(seconds)
"${BUILD[@]}" "${cache[@]}" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" .
t3=$(seconds)
"${BUILD[@]}" --no-cache --layers=false --iidfile "$WORK/run.iid" --build-arg IMAGE="$IMAGE" \
    -f docker/smoke-run.Containerfile docker
t4=$(seconds)
podman rmi "$(cat "$WORK/run.iid")" >/dev/null  # the run step's image holds only the job's outputs

size() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%.2f GB", $1 / 1e9}'; }
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" -v image="$(size "$IMAGE")" -v base="$(size "$BASE_IMAGE")" \
    'BEGIN {printf "docker-smoke passed: debian base %.0f s, python+torch base %.0f s, sparsect image %.0f s, " \
            "batch run %.0f s (total %.0f s); image %s (base with torch %s)\n", b-a, c-b, d-c, e-d, e-a, image, base}'
