# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: pin_model
short_description: Pin a model assignment to the digest its tag was resolved to
version_added: 0.1.0
description:
  - Returns the entry of C(edgeml_models) with C(digest) set from a C(ref -> digest) map (as the
    C(edgeml.fleet.model_digest) lookup resolves them), so every host gets the same version
    however the tag moves. An entry that already has a digest is returned as it is.
options:
  _input:
    description: One entry of C(edgeml_models), C({name, ref, ...}).
    type: dict
    required: true
  digests:
    description: Resolved digests by reference.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Pin this host's models
  ansible.builtin.set_fact:
    pinned: "{{ edgeml_models | map('edgeml.fleet.pin_model', digests) | list }}"
"""

RETURN = r"""
_value:
  description: The entry, with C(digest).
  type: dict
"""


def pin_model(model, digests):
    if model.get("digest"):
        return dict(model)
    if model.get("ref") not in digests:
        raise AnsibleFilterError(f"model {model.get('name')!r}: no digest for its ref "
                                 f"{model.get('ref')!r} (not resolved, or not in the bundle: it "
                                 f"has {', '.join(sorted(digests)) or 'nothing'})")
    return dict(model, digest=digests[model["ref"]])


class FilterModule:
    def filters(self):
        return {"pin_model": pin_model}
