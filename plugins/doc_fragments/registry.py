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
      - Used for every endpoint that names no C(username) or C(password) of its own.
      - Credentials go only to the registry they belong to (its scheme, host and port), and only
        over https, or over plain http to a registry on loopback (a lab); a plain http registry
        elsewhere is used anonymously, and asking it for credentials fails.
      - A bearer token realm gets them only if it is https, or on the registry's own scheme, host
        and port; any other realm is refused (an AuthError naming the realm).
      - Storage redirects of blobs never get them.
    type: str
  password:
    description:
      - Registry password or token. Never logged or returned.
      - Taken from E(EDGEML_REGISTRY_PASSWORD) when not given.
      - Sent under the rules of O(username).
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
      - A dict may also give C(username) and C(password) for that endpoint alone (a site mirror
        and core with different credentials); an endpoint that names neither uses O(username)
        and O(password). Keys other than C(url), C(ca_file), C(username), C(password) and C(kind)
        (set by the sites inventory) are refused.
      - Ansible does not hide values inside list elements by itself; the modules mask every
        endpoint C(password) in their logs, messages and results. Keep it in a vault all the same;
        callback plugins that record task arguments see it as it was given.
      - Blob downloads follow at most 5 storage redirects, each to http or https only, never from
        https to plain http, and without credentials. Manifests are read to at most 4 MiB, and
        blobs to at most the size their descriptor declares.
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
