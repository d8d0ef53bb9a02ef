"""model_sync on the lab's real hosts, over SSH and the docker connection."""

import subprocess

PLAYBOOK = "tests/integration/playbooks/sync_lab.yml"
HOSTS = ("edge-a1", "edge-a2", "edge-b1", "edge-b2", "edge-c1")


def test_sync_on_lab_hosts_uses_each_sites_endpoints(playbook):
    for host in HOSTS:  # start from a store without this model
        subprocess.run(["docker", "exec", host, "rm", "-rf",
                        "/var/lib/edgeml/models/fraud-detector-it"], check=True)
    first = playbook(PLAYBOOK)
    results = {host: dict(first.results(host))["Sync the pinned digest from the host's endpoints"]
               for host in HOSTS}
    for host in ("edge-a1", "edge-a2", "edge-b1", "edge-b2"):
        assert not results[host].get("failed"), results[host]
    digests = {r.get("digest") for h, r in results.items() if h != "edge-c1"}
    assert len(digests) == 1 and None not in digests  # one digest for the whole rollout
    assert results["edge-a1"]["source"] == "https://core-registry:5000"
    assert results["edge-b1"]["source"] == "https://site-b-mirror:5000"
    assert results["edge-b2"]["source"] == "https://site-b-mirror:5000"
    # The disconnected host has no endpoint: a clear failure, no traceback.
    assert results["edge-c1"]["failed"]
    assert "no registry endpoint was given" in results["edge-c1"]["msg"]
    assert "offline bundle" in results["edge-c1"]["msg"]
    owner = subprocess.run(["docker", "exec", "edge-a2", "stat", "-c", "%U:%G %a",
                            "/var/lib/edgeml/models/fraud-detector-it/current/model.onnx",
                            "/var/lib/edgeml/models/fraud-detector-it/versions",
                            "/var/lib/edgeml/models/blobs/sha256"],
                           capture_output=True, text=True, check=True).stdout.split("\n")
    # Root's, and the service's group may only read (the service never writes the store).
    assert owner[:3] == ["root:edgeml 640", "root:edgeml 750", "root:edgeml 750"]

    again = playbook(PLAYBOOK, "--limit", "site_site_a:site_site_b")
    assert again.rc == 0
    for host in ("edge-a1", "edge-a2", "edge-b1", "edge-b2"):
        assert again.stats[host]["changed"] == 0
        assert dict(again.results(host))["Sync the pinned digest from the host's endpoints"][
            "bytes_downloaded"] == 0
