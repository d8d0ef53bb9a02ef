"""The sites inventory plugin: output for good files, one clear error for each bad one."""

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

GOOD = {
    "plugin": "edgeml.fleet.sites",
    "registry": {"url": "https://registry.example.com"},
    "sites": [
        {"name": "plant", "connectivity": "connected", "vars": {"site_var": 1, "shared": "site"},
         "hosts": [{"name": "p1", "address": "10.0.0.1", "port": 2200, "user": "ops",
                    "connection": "ssh", "labels": {"line": "1"},
                    "vars": {"shared": "host"}}]},
        {"name": "wind", "connectivity": "intermittent",
         "mirror": {"url": "https://mirror.wind:5000", "ca_file": "/etc/ssl/wind.pem"},
         "timezone": "Europe/Berlin",
         "maintenance_windows": ["Sat 02:00-04:00", "Mon-Fri 23:00-01:00 UTC"],
         "hosts": [{"name": "w1", "address": "10.1.0.1", "arch": "aarch64",
                    "accelerator": "nvidia"}]},
        {"name": "ship", "connectivity": "disconnected",
         "hosts": [{"name": "s1", "address": "192.168.1.5"}]},
    ],
}


def parse(tmp_path, data, name="estate.sites.yml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    plugin = inventory_loader.get("edgeml.fleet.sites")
    inventory = InventoryData()
    assert plugin.verify_file(str(path))
    plugin.parse(inventory, DataLoader(), str(path), cache=False)
    return inventory


def hostvars(inventory, name):
    return inventory.get_host(name).get_vars()


def test_groups(tmp_path):
    inventory = parse(tmp_path, GOOD)
    groups = inventory.groups
    assert {g.name for g in groups["sites"].child_groups} == {"site_plant", "site_wind", "site_ship"}
    assert [h.name for h in groups["connectivity_intermittent"].hosts] == ["w1"]
    assert [h.name for h in groups["arch_aarch64"].hosts] == ["w1"]
    assert [h.name for h in groups["accelerator_nvidia"].hosts] == ["w1"]
    assert {h.name for h in groups["accelerator_none"].hosts} == {"p1", "s1"}


def test_pull_mode_hosts_have_a_group_of_their_own(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][1]["vars"] = {"edgeml_mode": "pull"}
    data["sites"][1]["hosts"].append({"name": "w2", "address": "10.1.0.2", "vars": {"edgeml_mode": "push"}})
    groups = parse(tmp_path, data).groups
    assert [h.name for h in groups["mode_pull"].hosts] == ["w1"]
    assert {h.name for h in groups["mode_push"].hosts} == {"p1", "w2", "s1"}
    # Both groups exist with no pull host at all, so "sites:!mode_pull" always names a group.
    assert parse(tmp_path, GOOD, name="plain.sites.yml").groups["mode_pull"].hosts == []


def test_a_mode_other_than_push_or_pull_is_refused(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][0]["hosts"][0]["vars"]["edgeml_mode"] = "poll"
    with pytest.raises(AnsibleParserError, match="edgeml_mode.*expected push or pull, got 'poll'"):
        parse(tmp_path, data)


def test_connection_vars_and_precedence(tmp_path):
    inventory = parse(tmp_path, GOOD)
    hv = hostvars(inventory, "p1")
    assert (hv["ansible_host"], hv["ansible_port"], hv["ansible_user"], hv["ansible_connection"]) \
        == ("10.0.0.1", 2200, "ops", "ssh")
    assert hv["site_var"] == 1 and hv["shared"] == "host"  # host vars win over site vars
    assert hv["edgeml_labels"] == {"line": "1"}
    assert hv["edgeml_site"] == "plant" and hv["edgeml_connectivity"] == "connected"


def test_registry_endpoints_by_connectivity(tmp_path):
    inventory = parse(tmp_path, GOOD)
    core = {"url": "https://registry.example.com", "kind": "core"}
    assert hostvars(inventory, "p1")["edgeml_registry_endpoints"] == [core]
    assert hostvars(inventory, "w1")["edgeml_registry_endpoints"] == [
        {"url": "https://mirror.wind:5000", "kind": "mirror", "ca_file": "/etc/ssl/wind.pem"}, core]
    assert hostvars(inventory, "s1")["edgeml_registry_endpoints"] == []


def test_disconnected_site_with_seeded_mirror_uses_only_the_mirror(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][2]["mirror"] = {"url": "https://ship-mirror"}
    inventory = parse(tmp_path, data)
    assert hostvars(inventory, "s1")["edgeml_registry_endpoints"] == [
        {"url": "https://ship-mirror", "kind": "mirror"}]


def test_a_mirror_may_have_its_own_credentials(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][1]["mirror"].update(username="wind", password="{{ vault_wind_password }}")
    inventory = parse(tmp_path, data)
    mirror, core = hostvars(inventory, "w1")["edgeml_registry_endpoints"]
    assert (mirror["username"], mirror["password"]) == ("wind", "{{ vault_wind_password }}")
    template = pytest.importorskip("ansible.template")
    assert template.is_trusted_as_template(mirror["password"])  # rendered on use, from the vault
    assert "username" not in core and "password" not in core  # core: the fleet's credentials


@pytest.mark.parametrize("value", ["", 12, ["x"]])
def test_endpoint_credentials_must_be_strings(tmp_path, value):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][1]["mirror"]["password"] = value
    with pytest.raises(AnsibleParserError, match="mirror.password"):
        parse(tmp_path, data)


def test_maintenance_windows(tmp_path):
    inventory = parse(tmp_path, GOOD)
    assert hostvars(inventory, "w1")["edgeml_maintenance_windows"] == [
        {"days": ["sat"], "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"},
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "23:00", "end": "01:00",
         "timezone": "UTC"}]
    # A list is apply windows only: downloads at any time.
    assert hostvars(inventory, "w1")["edgeml_download_windows"] == []
    assert hostvars(inventory, "p1")["edgeml_maintenance_windows"] == []
    assert hostvars(inventory, "p1")["edgeml_download_windows"] == []


@pytest.mark.parametrize("windows, download, apply", [
    ({"download": ["daily 00:00-06:00"], "apply": ["Sat-Mon 02:00-04:00 America/New_York"]},
     [{"days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")), "start": "00:00",
       "end": "06:00", "timezone": "Europe/Berlin"}],
     [{"days": ["sat", "sun", "mon"], "start": "02:00", "end": "04:00",
       "timezone": "America/New_York"}]),
    ({"apply": ["Sat 02:00-04:00"]}, [],
     [{"days": ["sat"], "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"}]),
    ({"download": ["Sun 01:00-02:00"]},
     [{"days": ["sun"], "start": "01:00", "end": "02:00", "timezone": "Europe/Berlin"}], []),
    ({}, [], []),
])
def test_download_and_apply_windows(tmp_path, windows, download, apply):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][1]["maintenance_windows"] = windows
    got = hostvars(parse(tmp_path, data), "w1")
    assert got["edgeml_download_windows"] == download
    assert got["edgeml_maintenance_windows"] == apply


def test_constructed_keyed_groups_and_compose(tmp_path):
    data = dict(GOOD, keyed_groups=[{"key": "edgeml_labels.line | default('none')",
                                     "prefix": "line"}],
                compose={"is_edge": "true"}, groups={"gpu": "edgeml_accelerator == 'nvidia'"})
    inventory = parse(tmp_path, data)
    assert [h.name for h in inventory.groups["line_1"].hosts] == ["p1"]
    assert [h.name for h in inventory.groups["gpu"].hosts] == ["w1"]
    assert hostvars(inventory, "s1")["is_edge"] is True


@pytest.mark.parametrize("name,ok", [
    ("estate.sites.yml", True), ("estate.sites.yaml", True), ("estate.yml", False),
    ("sites.yml", False), ("estate.sites.json", False)])
def test_verify_file(tmp_path, name, ok):
    path = tmp_path / name
    path.write_text("plugin: edgeml.fleet.sites\n")
    assert inventory_loader.get("edgeml.fleet.sites").verify_file(str(path)) is ok


@pytest.mark.parametrize("value,rate", [
    (1000, 1000), ("1000", 1000), ("512KiB/s", 512 << 10), ("20Mbit/s", 2_500_000),
    ("2MB/s", 2_000_000), ("2 MiB/s", 2 << 20), ("1.5GiB", 3 << 29), ("800kbit/s", 100_000),
    ("64 B/s", 64), ("1gbit/s", 125_000_000),
])
def test_link_bandwidth_units(tmp_path, value, rate):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][0]["link"] = {"bandwidth": value, "max_parallel_pulls": 2}
    hv = hostvars(parse(tmp_path, data), "p1")
    assert (hv["edgeml_bandwidth_limit"], hv["edgeml_max_parallel_pulls"]) == (rate, 2)
    assert "edgeml_bandwidth_limit" not in hostvars(parse(tmp_path, GOOD), "p1")  # no link: no cap


def test_link_vars_may_be_overridden_per_host(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][0]["link"] = {"bandwidth": "2MB/s"}
    data["sites"][0]["hosts"][0]["vars"]["edgeml_bandwidth_limit"] = 500
    assert hostvars(parse(tmp_path, data), "p1")["edgeml_bandwidth_limit"] == 500


def _site(**kw):
    site = {"name": "plant", "connectivity": "connected",
            "hosts": [{"name": "p1", "address": "10.0.0.1"}]}
    site.update(kw)
    return site


def _host(**kw):
    host = {"name": "p1", "address": "10.0.0.1"}
    host.update(kw)
    return _site(hosts=[host])


def _file(*sites, **top):
    data = {"plugin": "edgeml.fleet.sites", "registry": {"url": "https://reg.example.com"},
            "sites": list(sites)}
    data.update(top)
    return data


BAD = [
    # (id, data, fragments the message must hold)
    ("unknown top key", _file(_site(), registy={}), ["field 'registy'", "did you mean 'registry'"]),
    ("no sites", _file(), ["field 'sites'", "non-empty list"]),
    ("sites not a list", dict(_file(), sites={"a": 1}), ["field 'sites'"]),
    ("site not a mapping", _file("plant"), ["site '#1'", "expected a mapping"]),
    ("unknown site key", _file(_site(conectivity="connected")),
     ["site 'plant'", "field 'conectivity'", "did you mean 'connectivity'"]),
    ("site without name", _file({"connectivity": "connected", "hosts": [{"name": "a", "address": "b"}]}),
     ["site '#1'", "field 'name'"]),
    ("bad site name", _file(_site(name="plant a")), ["field 'name'", "'plant a'"]),
    ("duplicate site", _file(_site(), _site(hosts=[{"name": "p2", "address": "x"}])),
     ["site 'plant'", "defined twice"]),
    ("missing connectivity", _file({"name": "plant", "hosts": [{"name": "a", "address": "b"}]}),
     ["field 'connectivity'", "is required"]),
    ("bad connectivity", _file(_site(connectivity="satellite")),
     ["field 'connectivity'", "'satellite' is not one of connected, intermittent, disconnected"]),
    ("misspelt connectivity", _file(_site(connectivity="intermitent")),
     ["did you mean 'intermittent'"]),
    ("connected without registry", {"plugin": "edgeml.fleet.sites", "sites": [_site()]},
     ["field 'registry'", "site 'plant' is connected"]),
    ("registry without url", _file(_site(), registry={"ca_file": "/x"}), ["field 'registry.url'"]),
    ("registry bad scheme", _file(_site(), registry={"url": "ftp://reg"}),
     ["field 'registry.url'", "not a registry base URL"]),
    ("registry with path", _file(_site(), registry={"url": "https://reg/v2/x"}),
     ["not a registry base URL"]),
    ("registry bad port", _file(_site(), registry={"url": "https://reg:99999"}),
     ["field 'registry.url'", "not a valid URL"]),
    ("registry credentials in url", _file(_site(), registry={"url": "https://u:p@reg"}),
     ["no path, query or credentials"]),
    ("registry unknown key", _file(_site(), registry={"url": "https://reg", "cafile": "/x"}),
     ["field 'registry.cafile'", "did you mean 'ca_file'"]),
    ("mirror not a mapping", _file(_site(mirror="https://m")), ["field 'mirror'", "expected a mapping"]),
    ("mirror bad url", _file(_site(mirror={"url": "mirror.local"})), ["field 'mirror.url'"]),
    ("mirror relative ca", _file(_site(mirror={"url": "https://m", "ca_file": "ca.pem"})),
     ["field 'mirror.ca_file'", "absolute path"]),
    ("window not a list", _file(_site(maintenance_windows="Sat 02:00-04:00")),
     ["field 'maintenance_windows'", "expected a list"]),
    ("window malformed", _file(_site(maintenance_windows=["Saturday night"])),
     ["field 'maintenance_windows'", "'Saturday night' is not a window"]),
    ("window bad day", _file(_site(maintenance_windows=["Sun-Fry 02:00-04:00"])),
     ["'sun-fry' is not a day"]),
    ("window bad hour", _file(_site(maintenance_windows=["Sat 25:00-26:00"])),
     ["25:00 is not a time of day"]),
    ("windows unknown kind", _file(_site(maintenance_windows={"downlaod": ["Sat 02:00-04:00"]})),
     ["field 'maintenance_windows.downlaod'", "did you mean 'download'", "allowed: download, apply"]),
    ("apply windows not a list", _file(_site(maintenance_windows={"apply": "Sat 02:00-04:00"})),
     ["field 'maintenance_windows.apply'", "expected a list"]),
    ("download window malformed", _file(_site(maintenance_windows={"download": ["Sat 2-4"]})),
     ["field 'maintenance_windows.download'", "'Sat 2-4' is not a window"]),
    ("window bad timezone", _file(_site(maintenance_windows=["Sat 02:00-04:00 Mars/Olympus"])),
     ["'Mars/Olympus' is not a known timezone"]),
    ("site bad timezone", _file(_site(timezone="CEST+1")), ["field 'timezone'"]),
    ("site vars not a mapping", _file(_site(vars=["a"])), ["field 'vars'", "expected a mapping"]),
    ("site var bad name", _file(_site(vars={"1bad": 1})), ["field 'vars.1bad'"]),
    ("no hosts", _file(_site(hosts=[])), ["site 'plant'", "field 'hosts'"]),
    ("host not a mapping", _file(_site(hosts=["p1"])), ["host '#1'", "expected a mapping"]),
    ("unknown host key", _file(_host(adress="x")),
     ["host 'p1'", "field 'adress'", "did you mean 'address'"]),
    ("host without name", _file(_site(hosts=[{"address": "x"}])), ["host '#1'", "field 'name'"]),
    ("host without address", _file(_site(hosts=[{"name": "p1"}])),
     ["site 'plant'", "host 'p1'", "field 'address'", "needs an address"]),
    ("host blank address", _file(_host(address="  ")), ["field 'address'"]),
    ("duplicate host in site", _file(_site(hosts=[{"name": "p1", "address": "a"},
                                                  {"name": "p1", "address": "b"}])),
     ["host 'p1'", "already defined in site 'plant'"]),
    ("duplicate host across sites", _file(_site(), _site(name="other")),
     ["site 'other'", "host 'p1'", "already defined in site 'plant'"]),
    ("bad port", _file(_host(port=70000)), ["field 'port'", "1-65535"]),
    ("port as string", _file(_host(port="22")), ["field 'port'"]),
    ("bad arch", _file(_host(arch="amd64")), ["field 'arch'", "'amd64' is not one of x86_64, aarch64"]),
    ("misspelt arch", _file(_host(arch="aarch46")), ["did you mean 'aarch64'"]),
    ("bad accelerator", _file(_host(accelerator="tpu")), ["field 'accelerator'", "none, nvidia, intel"]),
    ("labels not a mapping", _file(_host(labels=["x"])), ["field 'labels'"]),
    ("label value nested", _file(_host(labels={"a": {"b": 1}})), ["field 'labels.a'"]),
    ("bad connection", _file(_host(connection="ssh; rm -rf")), ["field 'connection'"]),
    ("empty user", _file(_host(user="")), ["field 'user'"]),
    ("host var bad name", _file(_host(vars={"my-var": 1})), ["host 'p1'", "field 'vars.my-var'"]),
    ("link not a mapping", _file(_site(link="20Mbit/s")), ["field 'link'", "expected a mapping"]),
    ("link unknown key", _file(_site(link={"bandwith": 1000})),
     ["site 'plant'", "field 'link.bandwith'", "did you mean 'bandwidth'"]),
    ("bandwidth unknown unit", _file(_site(link={"bandwidth": "2 furlongs/s"})),
     ["field 'link.bandwidth'", "'2 furlongs/s' is not a bandwidth", "20Mbit/s"]),
    ("bandwidth ambiguous bits", _file(_site(link={"bandwidth": "20Mb/s"})),
     ["field 'link.bandwidth'", "'Mb' is ambiguous", "Mbit/s", "MB/s"]),
    ("bandwidth zero", _file(_site(link={"bandwidth": 0})),
     ["field 'link.bandwidth'", "less than 1 byte per second"]),
    ("bandwidth negative", _file(_site(link={"bandwidth": "-5MB/s"})), ["field 'link.bandwidth'"]),
    ("bandwidth bool", _file(_site(link={"bandwidth": True})), ["field 'link.bandwidth'"]),
    ("parallel pulls zero", _file(_site(link={"max_parallel_pulls": 0})),
     ["field 'link.max_parallel_pulls'", "1 or more"]),
    ("parallel pulls string", _file(_site(link={"max_parallel_pulls": "2"})),
     ["field 'link.max_parallel_pulls'"]),
]


@pytest.mark.parametrize("data,fragments", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_fails_clearly(tmp_path, data, fragments):
    with pytest.raises(AnsibleParserError) as caught:
        parse(tmp_path, data)
    message = str(caught.value)
    assert "estate.sites.yml" in message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_not_a_mapping(tmp_path):
    with pytest.raises(AnsibleParserError, match="expected a mapping"):
        parse(tmp_path, "- just\n- a list\n")


def test_example_and_lab_inventories_parse(repo_root, tmp_path):
    for path in (repo_root / "inventories").glob("*/*.sites.yml"):
        inventory = parse(tmp_path, path.read_text(), name=path.name)
        assert inventory.groups["sites"].child_groups, path


def test_cache_round_trip(tmp_path):
    data = dict(GOOD, cache=True, cache_plugin="ansible.builtin.jsonfile",
                cache_connection=str(tmp_path / "cache"))
    path = tmp_path / "estate.sites.yml"
    path.write_text(yaml.safe_dump(data))
    plugin = inventory_loader.get("edgeml.fleet.sites")
    first = InventoryData()
    plugin.parse(first, DataLoader(), str(path), cache=False)  # fills the cache
    plugin._cache.set_cache()  # pylint: disable=protected-access
    second = InventoryData()
    plugin = inventory_loader.get("edgeml.fleet.sites")
    plugin.parse(second, DataLoader(), str(path), cache=True)
    assert hostvars(second, "w1")["edgeml_arch"] == "aarch64"


def test_templates_in_vars_stay_templates(tmp_path):
    """ansible-core 2.19 renders only trusted strings: vars from the file must stay trusted."""
    template = pytest.importorskip("ansible.template")
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data["sites"][0]["hosts"][0]["vars"]["key_file"] = "{{ inventory_dir }}/id"
    inventory = parse(tmp_path, data)
    assert template.is_trusted_as_template(hostvars(inventory, "p1")["key_file"])
