#!/usr/bin/env python3
"""create -> Running latency of pods on one skiff node (image cached): KUBECONFIG NODE COUNT."""
import time, sys, statistics, subprocess, os
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
node = sys.argv[2]; n = int(sys.argv[3])
lat = []
for i in range(n):
    name = f"bench-{i}"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}
    w = watch.Watch()
    t0 = time.monotonic()
    v1.create_namespaced_pod("default", body)
    for ev in w.stream(v1.list_namespaced_pod, "default", field_selector=f"metadata.name={name}", timeout_seconds=60):
        if ev["object"].status.phase == "Running":
            lat.append(time.monotonic() - t0); w.stop(); break
lat.sort()
p = lambda q: lat[min(len(lat)-1, int(q*len(lat)))]*1000
print(f"skiff create->Running over {len(lat)} pods: p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms")
