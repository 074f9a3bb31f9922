"""Crash safety: SIGKILL during a burst of writes loses no acknowledged write, and the revision
never goes backwards."""

import json
import threading
import time

from conftest import Raw, Server

CMS = "/api/v1/namespaces/default/configmaps"


def test_sigkill_during_write_burst_loses_no_acknowledged_write(tmp_path):
    data = tmp_path / "data"
    server = Server(data)
    raw = Raw(server, tmp_path)
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n):
        i = 0
        while not stop.is_set() and i < 2000:
            name = f"w{n}-{i}"
            try:
                r = raw.request("POST", CMS, json.dumps({"metadata": {"name": name}, "data": {"i": str(i)}}))
            except Exception:
                return  # the server is gone
            if r.status_code == 201:
                with lock:
                    acked[name] = int(r.json()["metadata"]["resourceVersion"])
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.proc.kill()  # SIGKILL, mid-burst
    server.proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    server.log.close()
    assert len(acked) > 20, f"too few writes acknowledged before the kill: {len(acked)}"
    max_acked = max(acked.values())

    restarted = Server(data)
    try:
        (tmp_path / "again").mkdir()
        raw2 = Raw(restarted, tmp_path / "again")
        listing = raw2.request("GET", CMS).json()
        stored = {i["metadata"]["name"]: int(i["metadata"]["resourceVersion"]) for i in listing["items"]}
        missing = [n for n in acked if n not in stored]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        for name, rv in acked.items():
            assert stored[name] == rv, f"{name}: acknowledged at {rv}, stored at {stored[name]}"
        assert int(listing["metadata"]["resourceVersion"]) >= max_acked
        r = raw2.request("POST", CMS, json.dumps({"metadata": {"name": "after-restart"}}))
        assert r.status_code == 201
        assert int(r.json()["metadata"]["resourceVersion"]) > max_acked
    finally:
        restarted.stop()
