#!/usr/bin/env bash
# Installs what building, running and testing skiff needs on a Debian machine, by package name.
# Idempotent: only what is missing is installed. Needs root (or sudo).
set -euo pipefail

APT_PACKAGES=(
  build-essential pkg-config protobuf-compiler   # compilers; protoc for gRPC crates
  python3 python3-pip                            # the Python client tests
  etcd-server etcd-client                        # the etcd peer (benchmarks, etcd backend)
  docker-registry skopeo apache2-utils           # a local OCI registry for image tests
  busybox-static nginx-light                     # test images are built from these packages
  qemu-system-x86 kmod e2fsprogs zstd cpio       # boot skiff VMs; depmod; e2fsck checks skiff-mkfs
  nftables iproute2 util-linux runc              # agent tests (nft, netns, nsenter); runc is the benchmark peer
  curl ca-certificates openssl
)
PIP_PACKAGES=("kubernetes==32.0.1" "pytest==8.3.*" "requests" "pyyaml")

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# The image build fetches Debian's cloud kernel by package name: the package lists must be there.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  sudo_if_needed apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install the Rust toolchain (rustup) first, then re-run." >&2
  exit 1
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "error: kubectl (v1.32) not found on PATH; the tests drive the stock kubectl." >&2
  exit 1
fi

if ! python3 -c 'import kubernetes, pytest, requests, yaml' >/dev/null 2>&1; then
  echo "==> pip install ${PIP_PACKAGES[*]}"
  python3 -m pip install -q "${PIP_PACKAGES[@]}" 2>&1 | grep -v -i "running pip as the 'root' user" || true
fi
