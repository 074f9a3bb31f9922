#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build skiff, build the boot
# artifact (Debian's cloud kernel + an initramfs holding the static skiff binary) and boot a
# local QEMU cluster of skiff VMs: one control plane and two workers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "==> cargo build --release --bin skiff"
cargo build --release --bin skiff

state="${SKIFF_STATE:-.state/cluster}"
workers="${SKIFF_WORKERS:-2}"
if [ -f "$state/cluster.json" ]; then
  echo "==> a cluster already exists in $state; destroying it first"
  ./target/release/skiff cluster destroy --state "$state"
fi
echo "==> skiff cluster create --workers $workers --state $state"
./target/release/skiff cluster create --workers "$workers" --state "$state"
cat <<MSG

The cluster is up.
  export KUBECONFIG=$PWD/$state/kubeconfig
  kubectl get nodes                                  # cp-1 (control-plane, tainted NoSchedule), worker-1 ... all Ready
  kubectl create deployment web --image=nginx        # runs on the workers (a local mirror: --registry-mirror)
  ./target/release/skiff cluster status --state $state     # VMs, console logs, boot timelines
  ./target/release/skiff cluster destroy --state $state    # removes every VM and file it made
MSG
