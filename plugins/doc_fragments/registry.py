# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  username:
    description:
      - Registry user name, for basic auth or to obtain a bearer token.
      - Taken from E(EDGEML_REGISTRY_USERNAME) when not given.
    type: str
  password:
    description:
      - Registry password or token. Never logged or returned.
      - Taken from E(EDGEML_REGISTRY_PASSWORD) when not given.
    type: str
  validate_certs:
    description: Verify the registry's TLS certificate. Turn off only in a throwaway lab.
    type: bool
    default: true
  ca_path:
    description: CA bundle that signs the registries' certificates (an endpoint's C(ca_file) wins).
    type: path
  timeout:
    description: Seconds to wait for each registry endpoint to answer.
    type: int
    default: 30
  retries:
    description: How often a broken-off blob download is resumed before the endpoint is given up.
    type: int
    default: 3
"""

    ENDPOINTS = r"""
options:
  registries:
    description:
      - Registry endpoints to use, in order; each is tried until one serves the model.
      - An endpoint is a URL (V(https://registry.example.com:5000)), V(oci-layout:/path) for an
        OCI image layout directory such as an offline bundle's, or a dict with C(url) and an
        optional C(ca_file) (the form of C(edgeml_registry_endpoints) from the sites inventory).
    type: list
    elements: raw
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Reports what would be downloaded and changed, and changes nothing.
  diff_mode:
    support: full
    description: Shows the active digest before and after.
  idempotent:
    support: full
    description: A second run with the same arguments changes nothing and downloads nothing.
"""
