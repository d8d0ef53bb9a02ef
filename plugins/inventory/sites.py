# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: sites
short_description: An edge estate described as sites, their connectivity, mirrors and hosts
version_added: 0.1.0
description:
  - Reads a C(*.sites.yml) or C(*.sites.yaml) file that describes an estate of edge hosts grouped
    in B(sites). Each site is C(connected), C(intermittent) (on a flaky link, with a site mirror of
    the core registry) or C(disconnected) (reached only with an offline bundle).
  - Builds the groups C(sites) > C(site_<name>), C(connectivity_<mode>), C(arch_<arch>),
    C(accelerator_<kind>) and C(mode_push) / C(mode_pull) (the host variable C(edgeml_mode), default
    C(push); pull-mode hosts fetch their bundles themselves, see docs/pull.md), and gives every host the variables the collection's roles use, above all
    C(edgeml_registry_endpoints), the ordered list of registries the host pulls from.
  - Every mistake in the file fails with one message naming the file, the site, the host and the
    field, and what was expected. Set O(strict) to fail on errors in O(compose) and O(groups) too.
  - Site O(sites[].vars) and host O(sites[].hosts[].vars) become host variables; the host's win.
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as one for this plugin.
    required: true
    type: str
    choices: [edgeml.fleet.sites]
  registry:
    description: The core registry every connected and intermittent site pulls from.
    type: dict
    suboptions:
      url:
        description: Registry base URL, V(https://registry.example.com) or with a port.
        type: str
        required: true
      ca_file:
        description: CA bundle, on the edge hosts, that signs the registry's certificate.
        type: path
      username:
        description: The core registry's own user, when it differs from C(edgeml_registry_username).
        type: str
      password:
        description: Its password, as a Jinja reference to a vaulted variable.
        type: str
  sites:
    description: The sites of the estate.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Site name, unique in the file. Letters, digits, C(-), C(_), C(.).
        type: str
        required: true
      connectivity:
        description: How the site reaches the core registry.
        type: str
        required: true
        choices: [connected, intermittent, disconnected]
      mirror:
        description:
          - The site's registry mirror (a pull-through cache for intermittent sites, a mirror
            seeded from a bundle for disconnected ones). Hosts try it before the core registry.
        type: dict
        suboptions:
          url:
            description: Mirror base URL.
            type: str
            required: true
          ca_file:
            description: CA bundle on the hosts for the mirror's certificate.
            type: path
          username:
            description:
              - The mirror's own user, when it differs from C(edgeml_registry_username).
            type: str
          password:
            description:
              - The mirror's own password; write a Jinja reference to a vaulted variable such as
                V({{ vault_mirror_password }}), never the password itself. It is templated on use
                and masked in module output.
            type: str
      timezone:
        description: IANA timezone of the site's maintenance windows.
        type: str
        default: UTC
      maintenance_windows:
        description:
          - When changes may be made, as C(DAYS HH:MM-HH:MM [TIMEZONE]). DAYS is a day
            (V(Sat)), a range (V(Mon-Fri)), a list (V(Sat,Sun)) or V(daily). An end before the
            start runs past midnight. Without a timezone the site's O(sites[].timezone) applies.
          - A list is the apply windows (when a host may switch to a new version; it downloads at
            any time). A mapping with keys C(download) and C(apply) (each a list) sets both; a missing key means
            any time. Hosts get C(edgeml_maintenance_windows) (apply) and
            C(edgeml_download_windows).
        type: raw
      link:
        description:
          - The site's link to the core registry, for hosts that pull over it.
          - O(sites[].link.bandwidth) becomes C(edgeml_bandwidth_limit) (bytes per second),
            the default of P(edgeml.fleet.model_sync#module)'s C(max_bytes_per_second); the cap
            is per host transfer, not for the site as a whole.
          - O(sites[].link.max_parallel_pulls) becomes C(edgeml_max_parallel_pulls); at most
            this many hosts of the site download from core at once, so the link carries at
            most max_parallel_pulls x bandwidth from this collection. It applies only while
            the site has no O(sites[].mirror) (hosts that pull from a site mirror are not
            limited).
        type: dict
        suboptions:
          bandwidth:
            description:
              - Cap per host transfer, bytes per second as an integer, or a string with a unit
                such as V(512KiB/s), V(2MB/s) or V(20Mbit/s) (B, KB, MB, GB, KiB, MiB, GiB,
                bit, kbit, Mbit, Gbit; C(/s) optional).
            type: raw
          max_parallel_pulls:
            description: How many hosts of the site may pull from core at once (1 or more).
            type: int
      vars:
        description: Variables for every host of the site.
        type: dict
      hosts:
        description: The site's hosts.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Inventory hostname, unique in the whole file.
            type: str
            required: true
          address:
            description: Address Ansible connects to (C(ansible_host)).
            type: str
            required: true
          port:
            description: Connection port (C(ansible_port)).
            type: int
          user:
            description: Connection user (C(ansible_user)).
            type: str
          connection:
            description: Connection plugin (C(ansible_connection)), for example V(ssh).
            type: str
          arch:
            description: CPU architecture.
            type: str
            choices: [x86_64, aarch64]
            default: x86_64
          accelerator:
            description: Inference accelerator on the host.
            type: str
            choices: [none, nvidia, intel]
            default: none
          labels:
            description: Free-form key/value labels (C(edgeml_labels)), for example a line or a role.
            type: dict
          vars:
            description: Variables for this host; they win over the site's.
            type: dict
"""

EXAMPLES = r"""
# estate.sites.yml
plugin: edgeml.fleet.sites
registry:
  url: https://registry.example.com
sites:
  - name: factory-hamburg
    connectivity: connected
    hosts:
      - name: hh-line1
        address: 10.10.1.21
        user: ops
        labels: {line: "1"}
  - name: windfarm-north
    connectivity: intermittent
    mirror:
      url: https://mirror.windfarm-north.example.com:5000
    timezone: Europe/Berlin
    maintenance_windows: ["Sat 02:00-04:00"]
    link: {bandwidth: 20Mbit/s}
    hosts:
      - name: wf-turbine-07
        address: 10.20.0.7
        arch: aarch64
        accelerator: nvidia
  - name: ship-aurora
    connectivity: disconnected
    hosts:
      - name: aurora-bridge
        address: 192.168.50.10
keyed_groups:
  - key: edgeml_labels.line | default('none')
    prefix: line
"""

import difflib
import re
from datetime import time as _time
from urllib.parse import urlsplit

from ansible.errors import AnsibleOptionsError, AnsibleParserError
from ansible.inventory.helpers import get_group_vars
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.vars import combine_vars

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19
    trust_as_template = None

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9 on the controller
    ZoneInfo = None

CONNECTIVITY = ("connected", "intermittent", "disconnected")
ARCHES = ("x86_64", "aarch64")
ACCELERATORS = ("none", "nvidia", "intel")
WINDOW_KINDS = ("download", "apply")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TOP_KEYS = ("plugin", "registry", "sites", "compose", "groups", "keyed_groups", "strict",
            "leading_separator", "use_extra_vars", "use_vars_plugins", "cache", "cache_plugin",
            "cache_timeout", "cache_connection", "cache_prefix")
ENDPOINT_KEYS = ("url", "ca_file", "username", "password")
SITE_KEYS = ("name", "connectivity", "mirror", "timezone", "maintenance_windows", "link", "vars",
             "hosts")
LINK_KEYS = ("bandwidth", "max_parallel_pulls")
RATE_UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
              "bit": 1 / 8, "kbit": 1000 / 8, "mbit": 1000 ** 2 / 8, "gbit": 1000 ** 3 / 8}
HOST_KEYS = ("name", "address", "port", "user", "connection", "arch", "accelerator", "labels",
             "vars")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONNECTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
RATE_RE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]+)?\s*(?:/\s*s)?\s*$")
WINDOW_RE = re.compile(
    r"^(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})(?:\s+(?P<tz>\S+))?$")


class SitesError(AnsibleParserError):
    """A mistake in a sites file, located by file, site, host and field."""


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "edgeml.fleet.sites"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".sites.yml", ".sites.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        # Unknown top-level keys would be dropped silently by the option system: check first.
        raw = _load(self.loader, path)
        if not isinstance(raw, dict):
            raise SitesError(f"{path}: expected a mapping with 'plugin' and 'sites'")
        _check_keys(raw, TOP_KEYS, _Where(path))
        if not isinstance(raw.get("sites"), list) or not raw["sites"]:
            raise _Where(path).error("sites", "expected a non-empty list of sites")
        _mapping(raw.get("registry"), _Where(path), "registry")
        try:
            self._read_config_data(path)
        except AnsibleOptionsError as exc:
            raise SitesError(f"{path}: {exc.message}") from None

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        estate = None
        if use_cache:
            try:
                estate = _trust_templates(self._cache[cache_key])
            except KeyError:
                update_cache = True
        if estate is None:
            estate = build_estate(raw, path)
        if update_cache:
            self._cache[cache_key] = estate
        self._populate(estate)

    def _populate(self, estate):
        inventory = self.inventory
        inventory.add_group("sites")
        # Always both, so that a playbook's "sites:!mode_pull" matches a group even when empty.
        inventory.add_group("mode_push")
        inventory.add_group("mode_pull")
        constructed = any(self.get_option(o) for o in ("compose", "groups", "keyed_groups"))
        strict = self.get_option("strict")
        for site in estate:
            site_group = inventory.add_group(group_name("site", site["name"]))
            inventory.add_child("sites", site_group)
            mode_group = inventory.add_group(f"connectivity_{site['connectivity']}")
            for host in site["hosts"]:
                name = inventory.add_host(host["name"], group=site_group)
                inventory.add_child(mode_group, name)
                inventory.add_child(inventory.add_group(f"arch_{host['arch']}"), name)
                inventory.add_child(inventory.add_group(f"accelerator_{host['accelerator']}"), name)
                inventory.add_child(f"mode_{host['mode']}", name)
                for key, value in host["hostvars"].items():
                    inventory.set_variable(name, key, value)
                if constructed:
                    entry = inventory.get_host(name)
                    hostvars = combine_vars(get_group_vars(entry.get_groups()), entry.get_vars())
                    self._set_composite_vars(self.get_option("compose"), hostvars, name, strict)
                    hostvars = combine_vars(hostvars, entry.get_vars())
                    self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name,
                                                      strict)
                    self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name,
                                                   strict)


def _load(loader, path):
    """Load the file; on ansible-core 2.19+ its strings may hold templates (as in YAML inventories)."""
    try:
        return loader.load_from_file(path, cache="none", trusted_as_template=True)
    except TypeError:  # ansible-core < 2.19 has no template trust
        return loader.load_from_file(path, cache="none")


def _trust_templates(value):
    """Values read back from an inventory cache lose their template trust; give it back."""
    if trust_as_template is None:
        return value
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trust_templates(v) for v in value]
    if isinstance(value, dict):
        return {k: _trust_templates(v) for k, v in value.items()}
    return value


def group_name(prefix, name):
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


class _Where:
    """Where in the file a value sits, for error messages."""

    def __init__(self, path, site=None, host=None):
        self.path, self.site, self.host = path, site, host

    def error(self, field, problem):
        parts = [to_native(self.path)]
        if self.site is not None:
            parts.append(f"site '{self.site}'")
        if self.host is not None:
            parts.append(f"host '{self.host}'")
        if field:
            parts.append(f"field '{field}'")
        return SitesError(f"{', '.join(parts)}: {problem}")


def _check_keys(mapping, allowed, where, field_prefix=""):
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise where.error(f"{field_prefix}{key}", f"unknown key{suggestion} "
                              f"(allowed: {', '.join(allowed)})")


def _mapping(value, where, field):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise where.error(field, f"expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _choice(value, choices, where, field):
    if value not in choices:
        hint = difflib.get_close_matches(str(value), choices, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise where.error(field, f"'{value}' is not one of {', '.join(choices)}{suggestion}")
    return value


def _name(value, where, field):
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise where.error(field, f"expected a name of letters, digits, '-', '_' or '.' "
                                 f"(at most 63, starting with a letter or digit), got {value!r}")
    return value


def _endpoint(value, where, field, kind):
    value = _mapping(value, where, field)
    _check_keys(value, ENDPOINT_KEYS, where, f"{field}.")
    url = value.get("url")
    if not isinstance(url, str) or not url:
        raise where.error(f"{field}.url", "is required: the registry's base URL, "
                                          "such as https://registry.example.com:5000")
    try:
        parts = urlsplit(url)
        parts.port  # pylint: disable=pointless-statement  # raises on a bad port
    except ValueError as exc:
        raise where.error(f"{field}.url", f"'{url}' is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise where.error(f"{field}.url", f"'{url}' is not a registry base URL; expected "
                                          "https://HOST[:PORT] with no path, query or credentials")
    endpoint = {"url": f"{parts.scheme}://{parts.netloc}", "kind": kind}
    ca_file = value.get("ca_file")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not ca_file.startswith("/"):
            raise where.error(f"{field}.ca_file", f"expected an absolute path on the hosts, "
                                                  f"got {ca_file!r}")
        endpoint["ca_file"] = ca_file
    for key in ("username", "password"):  # this endpoint's own credentials (a mirror's, say)
        if value.get(key) is not None:
            if not isinstance(value[key], str) or not value[key]:
                raise where.error(f"{field}.{key}", "expected a non-empty string (for a password, "
                                                    "a Jinja reference to a vaulted variable)")
            endpoint[key] = value[key]
    return endpoint


def _clock(text, where, field, window):
    hours, minutes = (int(p) for p in text.split(":"))
    try:
        return _time(hours, minutes).strftime("%H:%M")
    except ValueError:
        raise where.error(field, f"'{window}': {text} is not a time of day") from None


def _days(text, where, field, window):
    text = text.lower()
    if text in ("daily", "*"):
        return list(DAYS)
    days = []
    for part in text.split(","):
        first, _sep, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise where.error(field, f"'{window}': '{part}' is not a day or day range; use "
                                     "Mon..Sun, a range like Mon-Fri, a list like Sat,Sun, or daily")
        start, end = DAYS.index(first), DAYS.index(last or first)
        span = range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)]
        days.extend(DAYS[i] for i in span if DAYS[i] not in days)
    return days


def _timezone(name, where, field):
    if not isinstance(name, str) or not name:
        raise where.error(field, f"expected an IANA timezone such as Europe/Berlin, got {name!r}")
    if name == "UTC" or ZoneInfo is None:
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise where.error(field, f"'{name}' is not a known timezone (IANA names such as "
                                 "Europe/Berlin or UTC)") from None
    return name


def _window_list(value, site_tz, where, field):
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(field, f"expected a list of windows like 'Sat 02:00-04:00', got {value!r}")
    windows = []
    for item in value:
        match = WINDOW_RE.match(item) if isinstance(item, str) else None
        if not match:
            raise where.error(field, f"{item!r} is not a window; expected 'DAYS HH:MM-HH:MM "
                                     "[TIMEZONE]', for example 'Sat 02:00-04:00 Europe/Berlin'")
        windows.append({
            "days": _days(match["days"], where, field, item),
            "start": _clock(match["start"], where, field, item),
            "end": _clock(match["end"], where, field, item),
            "timezone": _timezone(match["tz"], where, field) if match["tz"] else site_tz,
        })
    return windows


def _windows(value, site_tz, where):
    """(download windows, apply windows): a list is apply windows only; a missing key is any time."""
    field = "maintenance_windows"
    if not isinstance(value, dict):
        return [], _window_list(value, site_tz, where, field)
    _check_keys(value, WINDOW_KINDS, where, f"{field}.")
    return tuple(_window_list(value.get(kind), site_tz, where, f"{field}.{kind}")
                 for kind in WINDOW_KINDS)


def bandwidth(value, where, field="link.bandwidth"):
    """Bytes per second from an int or a string like '20Mbit/s', '512KiB/s', '2MB/s'."""
    if isinstance(value, int) and not isinstance(value, bool):
        rate = value
    else:
        match = RATE_RE.match(value) if isinstance(value, str) else None
        unit = (match["unit"] or "B") if match else ""
        if unit.endswith("b") and not unit.lower().endswith("bit"):  # 'Mb': megabits or bytes?
            raise where.error(field, f"{value!r}: '{unit}' is ambiguous; write {unit[:-1]}bit/s "
                                     f"for bits or {unit[:-1]}B/s for bytes per second")
        unit = unit.lower()
        if not match or unit not in RATE_UNITS:
            raise where.error(field, f"{value!r} is not a bandwidth; write bytes per second as an "
                                     "integer, or a number with a unit such as 512KiB/s, 2MB/s or "
                                     "20Mbit/s (units: B, KB, MB, GB, KiB, MiB, GiB, bit, kbit, "
                                     "Mbit, Gbit)")
        rate = int(float(match["number"]) * RATE_UNITS[unit])
    if rate < 1:
        raise where.error(field, f"{value!r} is less than 1 byte per second; remove "
                                 "link.bandwidth for no cap")
    return rate


def _link(value, where):
    """The hostvars of a site's link: edgeml_bandwidth_limit, edgeml_max_parallel_pulls."""
    value = _mapping(value, where, "link")
    _check_keys(value, LINK_KEYS, where, "link.")
    hostvars = {}
    if value.get("bandwidth") is not None:
        hostvars["edgeml_bandwidth_limit"] = bandwidth(value["bandwidth"], where)
    pulls = value.get("max_parallel_pulls")
    if pulls is not None:
        if isinstance(pulls, bool) or not isinstance(pulls, int) or pulls < 1:
            raise where.error("link.max_parallel_pulls", f"expected a whole number of hosts, 1 or "
                                                         f"more, got {pulls!r}")
        hostvars["edgeml_max_parallel_pulls"] = pulls
    return hostvars


def _vars(value, where, field):
    value = _mapping(value, where, field)
    for key in value:
        if not isinstance(key, str) or not VAR_RE.match(key):
            raise where.error(f"{field}.{key}", "is not a valid variable name (letters, digits "
                                                "and '_', not starting with a digit)")
    return value


def _host(host, site, index, core, mirror, seen, where_site):
    where = _Where(where_site.path, where_site.site, host.get("name", f"#{index + 1}")
                   if isinstance(host, dict) else f"#{index + 1}")
    if not isinstance(host, dict):
        raise where.error(None, f"expected a mapping with name and address, got {host!r}")
    _check_keys(host, HOST_KEYS, where)
    name = _name(host.get("name"), where, "name")
    if name in seen:
        raise where.error("name", f"host '{name}' is already defined in site '{seen[name]}'; "
                                  "host names must be unique across all sites")
    seen[name] = site["name"]
    address = host.get("address")
    if not isinstance(address, str) or not address.strip() or " " in address.strip():
        raise where.error("address", f"every host needs an address (hostname or IP) to connect "
                                     f"to, got {address!r}")
    hostvars = dict(site["link"])
    hostvars.update(site["vars"])
    hostvars.update(_vars(host.get("vars"), where, "vars"))
    hostvars["ansible_host"] = address.strip()
    port = host.get("port")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise where.error("port", f"expected a port number 1-65535, got {port!r}")
        hostvars["ansible_port"] = port
    for key, var in (("user", "ansible_user"), ("connection", "ansible_connection")):
        value = host.get(key)
        if value is not None:
            if not isinstance(value, str) or not value or (
                    key == "connection" and not CONNECTION_RE.match(value)):
                raise where.error(key, f"expected a {key} name, got {value!r}")
            hostvars[var] = value
    arch = _choice(host.get("arch", "x86_64"), ARCHES, where, "arch")
    accelerator = _choice(host.get("accelerator", "none"), ACCELERATORS, where, "accelerator")
    labels = _mapping(host.get("labels"), where, "labels")
    for key, value in labels.items():
        if not isinstance(value, (str, int, float, bool)):
            raise where.error(f"labels.{key}", f"label values are strings or numbers, got {value!r}")
    endpoints = [e for e in (mirror, core if site["connectivity"] != "disconnected" else None) if e]
    mode = hostvars.get("edgeml_mode", "push")
    if mode not in ("push", "pull"):
        raise where.error("vars.edgeml_mode", f"expected push or pull, got {mode!r}")
    hostvars.update({
        "edgeml_site": site["name"],
        "edgeml_connectivity": site["connectivity"],
        "edgeml_arch": arch,
        "edgeml_accelerator": accelerator,
        "edgeml_labels": {str(k): v for k, v in labels.items()},
        "edgeml_download_windows": site["windows"][0],
        "edgeml_maintenance_windows": site["windows"][1],
        "edgeml_registry_endpoints": endpoints,
    })
    return {"name": name, "arch": arch, "accelerator": accelerator, "mode": mode, "hostvars": hostvars}


def build_estate(data, path):
    """Validate a sites file's data and return its sites with each host's variables."""
    top = _Where(path)
    core = _endpoint(data["registry"], top, "registry", "core") if data.get("registry") else None
    sites = data.get("sites")
    if not isinstance(sites, list) or not sites:
        raise top.error("sites", "expected a non-empty list of sites")
    estate, seen_sites, seen_hosts = [], set(), {}
    for index, raw in enumerate(sites):
        label = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
        where = _Where(path, label)
        if not isinstance(raw, dict):
            raise where.error(None, f"expected a mapping with name, connectivity and hosts, "
                                    f"got {raw!r}")
        _check_keys(raw, SITE_KEYS, where)
        name = _name(raw.get("name"), where, "name")
        if name in seen_sites:
            raise where.error("name", f"site '{name}' is defined twice")
        seen_sites.add(name)
        if "connectivity" not in raw:
            raise where.error("connectivity", f"is required: one of {', '.join(CONNECTIVITY)}")
        connectivity = _choice(raw["connectivity"], CONNECTIVITY, where, "connectivity")
        if connectivity != "disconnected" and core is None:
            raise top.error("registry", f"site '{name}' is {connectivity} but the file has no "
                                        "'registry' (the core registry URL)")
        mirror = _endpoint(raw["mirror"], where, "mirror", "mirror") if raw.get("mirror") else None
        site_tz = _timezone(raw.get("timezone", "UTC"), where, "timezone")
        site = {"name": name, "connectivity": connectivity,
                "vars": _vars(raw.get("vars"), where, "vars"),
                "link": _link(raw.get("link"), where),
                "windows": _windows(raw.get("maintenance_windows"), site_tz, where)}
        hosts = raw.get("hosts")
        if not isinstance(hosts, list) or not hosts:
            raise where.error("hosts", "expected a non-empty list of hosts")
        site["hosts"] = [_host(h, site, i, core, mirror, seen_hosts, where)
                         for i, h in enumerate(hosts)]
        estate.append({"name": name, "connectivity": connectivity, "hosts": site["hosts"]})
    return estate
