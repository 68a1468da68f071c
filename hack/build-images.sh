#!/usr/bin/env bash
# Builds kubescribe:<version> (operator, gateway, command) and kubescribe-runner:<version> with buildah, without a
# container engine: RUN steps run in a chroot. Arguments go to both builds (--build-arg GPU=false, MODELS="tiny.en base").
set -euo pipefail
cd "$(dirname "$0")/.."

base=docker.io/library/python:3.11-slim-bookworm
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
hack/base-image.sh "$base"

# RUN steps get limits no higher than this machine's hard limits (buildah's defaults may exceed them). buildah sets
# its default of 32768 processes before these, so a RUN step cannot be given more.
files=$(ulimit -Hn)
processes=$(ulimit -Hu)
if [ "$processes" = unlimited ] || [ "$processes" -gt 32768 ]; then
  processes=32768
fi
flags=(
  --isolation chroot --layers --pull=false --force-rm
  --ulimit "nofile=$files:$files" --ulimit "nproc=$processes:$processes"
  --build-arg BASE_IMAGE="$base"
  # Labels rather than the Dockerfiles' build arguments: buildah reuses a cached LABEL step whatever their values.
  --label org.opencontainers.image.version="$version"
  --label org.opencontainers.image.revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  --label org.opencontainers.image.source="$(git config --get remote.origin.url || true)"
)
# A Debian host that trusts certificate authorities of its own (a TLS-inspecting proxy's, say) lends its certificates
# to the RUN steps, for pip; they stay out of the images.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  flags+=(--volume /etc/ssl/certs:/etc/ssl/certs:ro)
fi

buildah build "${flags[@]}" "$@" -f Dockerfile.operator -t "kubescribe:$version" .
buildah build "${flags[@]}" "$@" -f Dockerfile.runner -t "kubescribe-runner:$version" .
