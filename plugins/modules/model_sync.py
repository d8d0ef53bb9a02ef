#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: model_sync
short_description: Sync a model image from OCI registries into the host's model store
version_added: 0.1.0
description:
  - Pulls a model published as an OCI artifact (each layer one file, named by its
    C(org.opencontainers.image.title) annotation) or as a modelcar container image (files under
    O(model_path)) into the content-addressed store on the host, and optionally makes it the
    active version.
  - Every byte is checked against its sha256 digest while it streams; an interrupted download
    resumes from its partial file with HTTP C(Range), also in a later run.
  - A version becomes C(current) only when it is complete and verified, by an atomic symlink
    switch; the version it replaces becomes C(previous), the rollback target.
  - Endpoints are tried in order (the site mirror first, then core); the one that served is
    returned in RV(source).
  - O(registries) defaults to the host variable C(edgeml_registry_endpoints) that the
    P(edgeml.fleet.sites#inventory) inventory sets, O(username) and O(password) to
    C(edgeml_registry_username) and C(edgeml_registry_password).
  - O(max_bytes_per_second) caps the download rate; O(max_parallel_pulls) caps how many hosts of
    a site without a mirror pull from core at once (see docs/inventory.md, C(link)).
author: edgeml.fleet developers (@edgeml)
extends_documentation_fragment:
  - edgeml.fleet.registry
  - edgeml.fleet.registry.endpoints
  - edgeml.fleet.registry.attributes
options:
  name:
    description: Model name in the store (a directory under O(store_dir)).
    type: str
    required: true
  ref:
    description:
      - The model image, C(REPOSITORY:TAG) or C(REPOSITORY@sha256:DIGEST), without the registry
        host (the registry comes from O(registries)).
      - Required for O(state=present) and O(state=active).
    type: str
  digest:
    description:
      - Pin the manifest digest (C(sha256:...)). Resolve tags once on the controller (lookup
        P(edgeml.fleet.model_digest#lookup)) and pass the digest, so a rollout never mixes
        versions even if the tag moves.
      - With O(state=rollback), the staged version to switch to; with O(state=rejected), the
        version that is rejected.
    type: str
  store_dir:
    description: The host model store.
    type: path
    default: /var/lib/edgeml/models
  state:
    description:
      - V(present) stages the version (downloads and verifies it) without switching.
      - V(active) stages it and makes it current.
      - V(absent) removes the model and its versions.
      - V(rollback) switches to the previous version (or to O(digest)); afterwards there is no
        previous version, so a second rollback changes nothing.
      - V(rejected) records that the version O(digest) failed here (verification or the health
        gate), with O(reason), so a deploy does not try it again on every run. Nothing else changes.
    type: str
    choices: [present, active, absent, rollback, rejected]
    default: active
  keep:
    description: Versions to keep per model (current and previous are always kept).
    type: int
    default: 3
  model_path:
    description: For modelcar images, the directory in the image that holds the model.
    type: str
    default: /models
  max_extract_bytes:
    description: For modelcar images, refuse layers that unpack to more than this (a decompression bomb).
    type: int
    default: 8589934592
  owner:
    description:
      - Owner given to the store's directories and the model's files. The roles set V(root),
        because the inference service only reads the store.
      - A difference in owner, group or mode (directories C(0750), files C(0640)) is put right
        and reported as a change, also in check mode.
    type: str
  group:
    description: Group given to them (the inference service's group, which may only read).
    type: str
  reason:
    description: With O(state=rejected), why the version was rejected (kept with the record).
    type: str
  retry_rejected:
    description:
      - With O(state=present) or O(state=active), forget a record that the version was rejected
        here before (RV(rejected) is then null), so it is tried again.
    type: bool
    default: false
  signatures:
    description:
      - Fetch the image's signatures (Sigstore bundles attached as OCI referrers, found by the
        referrers API or the C(sha256-<hex>) tag schema, also in an V(oci-layout:DIR) endpoint)
        and keep them in the store with the version, for the host's signature check.
      - The endpoint that served the image is asked first; when it has none (a mirror that
        lacks them), the other endpoints in order. When the pinned version is already in the
        store, the endpoints are asked for its signatures only, and only when the store keeps
        none for it (see O(refresh_signatures)).
      - The signatures of the first endpoint that has some replace those kept; when no endpoint
        has any (or none could be asked), what the store has is kept. Failing to get them never
        fails the run (see RV(signature_errors)); nothing here decides whether a signature is
        valid or trusted.
    type: bool
    default: true
  refresh_signatures:
    description:
      - Ask the endpoints for the signatures of a version already in the store even when the
        store keeps some, for example after a release was signed again with a new key.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for another run that holds the store's lock (sync, rollback and
        clean-up take it; check mode does not), then fail without changing anything.
    type: int
    default: 600
  max_bytes_per_second:
    description:
      - Cap on the rate of this run's blob downloads, in bytes per second (all of its blobs
        together); V(0) is no cap. A token bucket paces the reads, letting at most 256 KiB pass
        ahead of the cap.
      - Defaults to the host variable C(edgeml_bandwidth_limit), which the
        P(edgeml.fleet.sites#inventory) inventory sets from a site's C(link.bandwidth); V(0)
        when that is not set either.
    type: int
  max_parallel_pulls:
    description:
      - Read by the action plugin on the controller, not on the host. At most this many hosts
        of O(pull_slot_group) run a downloading model_sync at once; the others wait for a free
        slot (up to O(pull_slot_timeout)). Each slot is a lock file on the controller, held
        while the module runs and released by the kernel should the worker die. V(0) is no
        limit. Slots are not taken in check mode, nor for O(state=absent), V(rollback) or
        V(rejected).
      - Defaults to the host variable C(edgeml_max_parallel_pulls) (a site's
        C(link.max_parallel_pulls)), but only when the host pulls from core, that is when none
        of its O(registries) is the site's mirror (an endpoint with C(kind=mirror)); with a
        mirror the site's link does not carry the pulls and there is no limit.
      - One controller holds the slots; two controllers running at once each allow this many.
    type: int
  pull_slot_group:
    description:
      - Read by the action plugin. The hosts that share O(max_parallel_pulls) slots; defaults
        to the host variable C(edgeml_site).
    type: str
  pull_slot_timeout:
    description:
      - Read by the action plugin. Seconds to wait for a free pull slot, then fail without
        changing anything.
    type: int
    default: 3600
notes:
  - Runs on the edge host with only the Python standard library.
seealso:
  - module: edgeml.fleet.model_info
  - module: edgeml.fleet.model_publish
"""

EXAMPLES = r"""
- name: Make fraud-detector 1.1 the active model, from the site mirror or core
  edgeml.fleet.model_sync:
    name: fraud-detector
    ref: models/fraud-detector:1.1
    registries: "{{ edgeml_registry_endpoints }}"
    username: "{{ edgeml_registry_username }}"
    password: "{{ edgeml_registry_password }}"
    owner: root  # the service only reads the store: never make it the service user's
    group: edgeml

- name: Stage a pinned digest without switching (a canary decides later)
  edgeml.fleet.model_sync:
    name: fraud-detector
    ref: models/fraud-detector:1.1
    digest: "{{ lookup('edgeml.fleet.model_digest', 'models/fraud-detector:1.1', registry=core) }}"
    registries: "{{ edgeml_registry_endpoints }}"
    state: present

- name: Sync from an offline bundle's OCI layout
  edgeml.fleet.model_sync:
    name: image-classifier
    ref: models/image-classifier:1.0
    registries: ["oci-layout:/media/usb/edgeml-bundle/images"]

- name: Remember that a version failed its health gate here
  edgeml.fleet.model_sync:
    name: fraud-detector
    digest: "{{ plan.digest }}"
    state: rejected
    reason: "Health gate: golden cases answered wrong"

- name: Roll back to the previous version
  edgeml.fleet.model_sync:
    name: fraud-detector
    state: rollback
"""

RETURN = r"""
digest:
  description: Manifest digest of the version now active (or staged, with O(state=present)).
  returned: success, except with O(state=absent)
  type: str
  sample: sha256:5d1c3f0f0a3e2b8e4a7f3c0d6b1e9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a
previous_digest:
  description: The version that was active before this run.
  returned: success
  type: str
  sample: sha256:0b1f2e3d4c5b6a79887766554433221100ffeeddccbbaa998877665544332211
version_dir:
  description: Directory holding the version's files.
  returned: success, except with O(state=absent)
  type: str
  sample: /var/lib/edgeml/models/fraud-detector/versions/5d1c3f0f…
source:
  description: The endpoint that served the manifest (V(store) when no download was needed).
  returned: success
  type: str
  sample: https://site-b-mirror:5000
shape:
  description: V(artifact) or V(modelcar).
  returned: when a version was staged or found
  type: str
  sample: artifact
bytes_downloaded:
  description: Blob bytes fetched over the network in this run (would be, in check mode).
  returned: success
  type: int
  sample: 33679
bytes_reused:
  description: Blob bytes already in the store (or in partial files) that were not fetched again.
  returned: success
  type: int
  sample: 0
bytes_per_second:
  description:
    - Rate of this run's blob downloads, RV(bytes_downloaded) over the time they took (with a
      cap set, at most the cap plus the 256 KiB burst spread over that time).
  returned: when blobs were downloaded
  type: int
  sample: 2096128
download_started:
  description: When the blob downloads began, seconds since the epoch (the host's clock).
  returned: when blobs were downloaded
  type: float
  sample: 1795000000.12
download_ended:
  description: When the blob downloads ended, seconds since the epoch (the host's clock).
  returned: when blobs were downloaded
  type: float
  sample: 1795000024.51
pull_slot:
  description:
    - The pull slot the run held (see O(max_parallel_pulls)), with its C(group), its C(slot)
      number, the C(limit) and the C(waited) seconds; null when no slot was needed.
  returned: success
  type: dict
  sample: {"group": "site-a", "slot": 1, "limit": 2, "waited": 3.2}
seconds:
  description: Wall time of the run.
  returned: success
  type: float
  sample: 0.42
rejected:
  description:
    - Why the version in RV(digest) was rejected on this host before (see O(state=rejected)),
      or null when it was not (or O(retry_rejected=true) forgot it). Reported also in check
      mode, and for a pinned digest also when the run fails.
  returned: with O(state=present), O(state=active) and O(state=rejected)
  type: str
  sample: "Health gate: golden cases answered wrong"
signatures:
  description:
    - How many signatures the store keeps for the version in RV(digest) after the run (would
      keep, in check mode).
  returned: with O(state=present) and O(state=active)
  type: int
  sample: 1
signatures_source:
  description:
    - The endpoint whose signatures were kept in this run, V(store) when the store's were kept
      (no endpoint had any), null when there are none.
  returned: with O(state=present) and O(state=active)
  type: str
  sample: https://core-registry:5000
signature_errors:
  description:
    - Why signatures could not be fetched from an endpoint, one message each. They do not fail
      the run; the host's signature check decides.
  returned: with O(state=present) and O(state=active)
  type: list
  elements: str
  sample: []
files:
  description: The version's files with their digests and sizes.
  returned: success, except with O(state=absent)
  type: dict
  sample: {"model.onnx": {"digest": "sha256:88e8…", "size": 605}}
"""

from ansible_collections.edgeml.fleet.plugins.module_utils._common import RegistryModule
from ansible_collections.edgeml.fleet.plugins.module_utils._sync import run


def main():
    module = RegistryModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "ref": {"type": "str"},
            "digest": {"type": "str"},
            "store_dir": {"type": "path", "default": "/var/lib/edgeml/models"},
            "state": {"type": "str", "default": "active",
                      "choices": ["present", "active", "absent", "rollback", "rejected"]},
            "keep": {"type": "int", "default": 3},
            "model_path": {"type": "str", "default": "/models"},
            "max_extract_bytes": {"type": "int", "default": 8 << 30},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "lock_timeout": {"type": "int", "default": 600},
            "reason": {"type": "str"},
            "retry_rejected": {"type": "bool", "default": False},
            "signatures": {"type": "bool", "default": True},
            "refresh_signatures": {"type": "bool", "default": False},
            "max_bytes_per_second": {"type": "int"},
            "max_parallel_pulls": {"type": "int"},
            "pull_slot_group": {"type": "str"},
            "pull_slot_timeout": {"type": "int", "default": 3600},
        },
        required_if=[("state", "present", ["ref"]), ("state", "active", ["ref"]),
                     ("state", "rejected", ["digest", "reason"])],
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()
