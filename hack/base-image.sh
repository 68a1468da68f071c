#!/usr/bin/env bash
# Makes sure buildah's storage holds the base image the Dockerfiles name: pulled when a registry answers, else a
# stand-in built from Debian's packages under the same name and tag, so that the Dockerfiles build unchanged.
# README.md ("Container images") says how the stand-in differs from the public image.
set -euo pipefail

image=${1:-docker.io/library/python:3.11-slim-bookworm}
if buildah inspect --type image "$image" >/dev/null 2>&1 || buildah pull --quiet "$image" >/dev/null 2>&1; then
  exit 0
fi
echo "cannot pull $image; building a stand-in from Debian bookworm's packages" >&2

rootfs=$(mktemp --suffix=.tar)
container=""
trap 'rm -f "$rootfs"; [ -z "$container" ] || buildah rm "$container" >/dev/null' EXIT
# Merged /usr as debootstrap makes it (without the usrmerge package and its perl), and no documentation, as in
# debian:bookworm-slim.
mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/'{doc,man,info,locale}'/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,netbase,tzdata \
  bookworm "$rootfs" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >/dev/null
container=$(buildah from scratch)
buildah add --quiet "$container" "$rootfs" /
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd python3 "$container"
buildah commit --quiet --rm "$container" "$image" >/dev/null
container=""
