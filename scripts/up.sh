#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build skiff, and start a
# control plane on this host that stock kubectl can use.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
echo "==> cargo build --release --bin skiff"
cargo build --release --bin skiff

state=".state/server"
mkdir -p "$state"
rm -f "$state/kubeconfig"  # written anew once the server listens
echo "==> starting skiff server (data in $state, log in $state.log)"
./target/release/skiff server --data-dir "$state" --listen 127.0.0.1:6443 >"$state.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  [ -f "$state/kubeconfig" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "skiff server exited; see $state.log" >&2; exit 1; }
  sleep 0.1
done
cat <<MSG

skiff server is running (pid $pid).
  export KUBECONFIG=$PWD/$state/kubeconfig
  kubectl get namespaces
  kubectl create deployment web --image=nginx
Stop it with: kill $pid
MSG
