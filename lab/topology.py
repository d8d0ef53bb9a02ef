"""The lab's estate: its sites, networks, registries and hosts, described here and only here.

The lab script starts containers from it. What Ansible and molecule read is derived from it by
``python -m lab render`` (lab/render.py): the lab's sites inventory, the inventories of the
extras and the molecule scenarios' platforms. The unit tests in ``tests/unit/lab/`` fail when
those files drift from this one.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("EDGEML_LAB_STATE", ROOT / "lab" / ".state"))
LABEL = "io.edgeml.lab"

CORE_NET = "edgeml-core"  # the core registry and connected hosts (a plain bridge)
SITE_B_NET = "edgeml-site-b"  # internal: only the site mirror bridges it to core

REGISTRY_PORT = int(os.environ.get("EDGEML_LAB_REGISTRY_PORT", "5000"))
MIRROR_PORT = int(os.environ.get("EDGEML_LAB_MIRROR_PORT", "5001"))
SSH_PORT = int(os.environ.get("EDGEML_LAB_SSH_PORT", "2222"))
SSH_USER = "edgeadmin"
REGISTRY_USER = "edgeml"
# Every registry and mirror listens on this port inside the lab's networks (the ports above are
# where the controller reaches them on 127.0.0.1).
REGISTRY_LISTEN_PORT = 5000


@dataclass(frozen=True)
class Site:
    name: str
    connectivity: str  # connected, intermittent or disconnected, as in a sites inventory
    mirror: Optional[str] = None  # URL of the site's registry mirror, as the site's hosts reach it
    timezone: Optional[str] = None
    maintenance_windows: tuple = ()
    vars: dict = field(default_factory=dict)  # the site's variables in the inventory


@dataclass(frozen=True)
class Host:
    name: str
    site: str
    networks: tuple = ()  # empty: no network at all (network_mode none)
    ssh_port: Optional[int] = None  # published on 127.0.0.1 when set
    labels: dict = field(default_factory=dict)  # the inventory's edgeml_labels


@dataclass(frozen=True)
class Registry:
    name: str
    networks: tuple
    port: int  # published on 127.0.0.1
    proxy_of: Optional[str] = None  # remote URL for a pull-through cache
    extra: dict = field(default_factory=dict)

    @property
    def url(self):
        """The registry as the lab's hosts reach it."""
        return f"https://{self.name}:{REGISTRY_LISTEN_PORT}"


CORE_REGISTRY = Registry("core-registry", (CORE_NET,), REGISTRY_PORT)
SITE_B_MIRROR = Registry(
    "site-b-mirror", (CORE_NET, SITE_B_NET), MIRROR_PORT, proxy_of=CORE_REGISTRY.url
)
REGISTRIES = (CORE_REGISTRY, SITE_B_MIRROR)

NETWORKS = {CORE_NET: {"internal": False}, SITE_B_NET: {"internal": True}}

SITES = (
    Site("site-a", "connected"),
    # No maintenance windows: enforced, they would make every lab run depend on the clock;
    # tests/integration/test_windows.py sets them per run.
    Site("site-b", "intermittent", mirror=SITE_B_MIRROR.url, timezone="Europe/Berlin"),
    Site("site-c", "disconnected"),
)

HOSTS = (
    Host("edge-a1", "site-a", (CORE_NET,), ssh_port=SSH_PORT, labels={"line": "1", "role": "inspection"}),
    Host("edge-a2", "site-a", (CORE_NET,), labels={"line": "2", "role": "inspection"}),
    Host("edge-b1", "site-b", (SITE_B_NET,), labels={"turbine": "07"}),
    Host("edge-b2", "site-b", (SITE_B_NET,), labels={"turbine": "12"}),
    Host("edge-c1", "site-c", labels={"vessel": "aurora"}),
)


@dataclass(frozen=True)
class Extra:
    """Hosts some tests add to a running lab (`python -m lab up --with NAME`; `lab down` removes
    them too). The molecule scenario of the same name runs on them, with the inventory in
    molecule/NAME/inventory/."""
    about: str  # what the extra is for, at the head of its inventory
    networks: dict
    sites: tuple
    gateways: tuple  # hosts that serve their site's registry mirror: each gets a TLS certificate
    hosts: tuple  # the sites' edge hosts
    molecule: bool = True  # its inventory is molecule/NAME/inventory/, else inventories/lab-NAME/


# mirror: an intermittent site of its own whose gateway runs role registry_mirror, so the
# molecule scenario `mirror` starts from an empty cache and hosts that have pulled nothing.
SITE_M_NET = "edgeml-site-m"
EXTRAS = {
    "mirror": Extra(
        about="An intermittent site of its own (lab: `python -m lab up --with mirror`): two hosts on an "
              "internal network that reach the core registry only through their gateway's mirror.",
        networks={SITE_M_NET: {"internal": True}},
        sites=(Site("site-m", "intermittent", mirror=f"https://gw-m:{REGISTRY_LISTEN_PORT}"),),
        gateways=(Host("gw-m", "site-m", (CORE_NET, SITE_M_NET)),),
        hosts=(Host("edge-m1", "site-m", (SITE_M_NET,)),
               Host("edge-m2", "site-m", (SITE_M_NET,))),
    ),
    # pull: a host the controller cannot reach (tests/integration/test_pull_mode.py). It has no
    # SSH port and the tests use no docker exec after its first bootstrap: it fetches its
    # bundles through site-b's mirror and sends its reports to the core registry (a pull-through
    # mirror takes no pushes).
    "pull": Extra(
        about="A pull-mode host (lab: `python -m lab up --with pull`): no inbound access; it fetches "
              "its site's bundle through site-b's mirror on a timer and sends its reports to core.",
        networks={},
        sites=(Site("site-p", "intermittent", mirror=SITE_B_MIRROR.url,
                    vars={"edgeml_mode": "pull", "edgeml_pull_interval": "20s",
                          "edgeml_pull_jitter": "5s"}),),
        gateways=(),
        hosts=(Host("edge-p1", "site-p", (SITE_B_NET, CORE_NET)),),
        molecule=False,
    ),
}


def extra_inventory_dir(name):
    """Where the inventory of extra NAME is rendered."""
    if EXTRAS[name].molecule:
        return ROOT / "molecule" / name / "inventory"
    return ROOT / "inventories" / f"lab-{name}"


# The address the controller (this machine) uses for the core registry.
CONTROLLER_REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
