"""The capture dataset's manifest: one entry per fetched file, named as the fetch names it;
paths the server never writes are left out."""

from ansible_collections.edgeml.fleet.plugins.filter.capture_manifest import capture_manifest

HEX = "a" * 64


def _host(name, site, *paths, missing=()):
    """A host's fetch results, looped over capture_files entries; missing: paths not fetched."""
    results = []
    for path in paths:
        item = {"path": path, "bytes": 10, "sha256": "c" * 64, "modified": 1.5}
        results.append({"item": item, "changed": False, "file": path} if path in missing
                       else {"item": item, "changed": True, "dest": "/d/" + path.rsplit("/", 1)[1]})
    return {"inventory_hostname": name, "edgeml_site": site, "__edgeml_capture_fetched": {"results": results}}


def test_each_file_that_arrived_is_listed_as_fetched():
    gone = f"/var/lib/edgeml/capture/fraud/{HEX}/trimmed.jsonl"
    entries = capture_manifest([
        _host("b1", "site-b", f"/var/lib/edgeml/capture/fraud/{HEX}/20261126T120000Z-1-2.jsonl"),
        _host("a1", "site-a", f"/var/lib/edgeml/capture/fraud/{HEX}/x.jsonl",
              f"/var/lib/edgeml/capture/fraud/{HEX}/../../../../etc/passwd",
              "/var/lib/edgeml/capture/Fraud!/short/x.jsonl", gone, missing=(gone,)),
        {"inventory_hostname": "c1"}, {"inventory_hostname": "d1", "__edgeml_capture_fetched": {"results": "x"}},
        {"inventory_hostname": "e1", "__edgeml_capture_fetched": {"results": [{"item": {"path": gone}, "failed": True}]}}])
    assert [e["host"] for e in entries] == ["a1", "b1"]
    assert entries[0] == {"site": "site-a", "host": "a1", "model": "fraud", "version": f"sha256:{HEX}",
                          "file": f"site-a/fraud/{HEX}/a1/x.jsonl", "bytes": 10, "sha256": "c" * 64,
                          "modified": 1.5}
