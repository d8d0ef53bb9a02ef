"""The lab's sites, networks and hosts: the one place they are described.

``inventories/lab/lab.sites.yml`` describes the same estate to Ansible; the unit test
``tests/unit/lab/test_lab_inventory.py`` keeps the two in step.
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


@dataclass(frozen=True)
class Host:
    name: str
    site: str
    networks: tuple = ()  # empty: no network at all (network_mode none)
    ssh_port: Optional[int] = None  # published on 127.0.0.1 when set


@dataclass(frozen=True)
class Registry:
    name: str
    networks: tuple
    port: int  # published on 127.0.0.1
    proxy_of: Optional[str] = None  # remote URL for a pull-through cache
    extra: dict = field(default_factory=dict)


HOSTS = (
    Host("edge-a1", "site-a", (CORE_NET,), ssh_port=SSH_PORT),
    Host("edge-a2", "site-a", (CORE_NET,)),
    Host("edge-b1", "site-b", (SITE_B_NET,)),
    Host("edge-b2", "site-b", (SITE_B_NET,)),
    Host("edge-c1", "site-c"),
)

CORE_REGISTRY = Registry("core-registry", (CORE_NET,), REGISTRY_PORT)
SITE_B_MIRROR = Registry(
    "site-b-mirror", (CORE_NET, SITE_B_NET), MIRROR_PORT, proxy_of="https://core-registry:5000"
)
REGISTRIES = (CORE_REGISTRY, SITE_B_MIRROR)

NETWORKS = {CORE_NET: {"internal": False}, SITE_B_NET: {"internal": True}}

# Extra hosts some tests add (`python -m lab up --with NAME`); `lab down` removes them too.
# mirror: an intermittent site of its own whose gateway runs role registry_mirror, so the
# molecule scenario `mirror` starts from an empty cache and hosts that have pulled nothing.
SITE_M_NET = "edgeml-site-m"
EXTRAS = {
    "mirror": {
        "networks": {SITE_M_NET: {"internal": True}},
        "hosts": (Host("gw-m", "site-m", (CORE_NET, SITE_M_NET)),
                  Host("edge-m1", "site-m", (SITE_M_NET,)),
                  Host("edge-m2", "site-m", (SITE_M_NET,))),
        "certs": ("gw-m",),
    },
}

# The address the controller (this machine) uses for the core registry.
CONTROLLER_REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
