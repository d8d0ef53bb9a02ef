from ansible_collections.edgeml.fleet.plugins.filter.fleet_table import fleet_table


def test_table_sorted_by_site_and_marks_failed_hosts():
    hosts = [
        {"inventory_hostname": "b1", "edgeml_site": "site-b", "edgeml_connectivity": "intermittent",
         "edge_host_report": {"provisioned": True, "python": "3.11.2", "free_mb": 900}},
        {"inventory_hostname": "a1", "edgeml_site": "site-a", "edgeml_connectivity": "connected",
         "edge_host_report": {"provisioned": False, "python": "3.9.2", "free_mb": 10}},
        {"inventory_hostname": "c1", "edgeml_site": "site-c", "edgeml_connectivity": "disconnected"},
    ]
    lines = fleet_table(hosts, ["a1", "b1"])
    assert lines[0].split() == ["SITE", "HOST", "CONNECTIVITY", "STATE", "PYTHON", "FREE", "MiB"]
    assert lines[1].split()[:4] == ["site-a", "a1", "connected", "checked"]
    assert lines[2].split()[:4] == ["site-b", "b1", "intermittent", "provisioned"]
    assert lines[3].split()[:4] == ["site-c", "c1", "disconnected", "FAILED"]
    assert lines[-1] == "3 hosts in 3 sites, 2 ok, 1 failed"
    # columns line up
    assert len({line.index("CONNECTIVITY") if i == 0 else None for i, line in enumerate(lines[:1])}) == 1
