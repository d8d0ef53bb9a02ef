# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what model_info reports about the host's store (it only reads).

Decided here: what is said of each model (current and previous digests, versions newest first
with their size and the number of signatures kept, versions rejected here and why) and what counts as a problem (with verify:
a file or blob that does not match, or current pointing at a version that is not staged).
"""

from __future__ import annotations

from ansible_collections.edgeml.fleet.plugins.module_utils._store import Store, StoreError


def describe_model(store, name, verify, problems):
    """One model's entry of the report; what verify finds wrong is added to problems."""
    current = store.current(name)
    versions = []
    for digest, record in store.versions(name):
        versions.append({
            "digest": digest, "ref": record.get("ref"), "shape": record.get("shape"),
            "source": record.get("source"), "staged_at": record.get("staged_at"),
            "size": sum(f.get("size", 0) for f in record.get("files", {}).values()),
            "active": digest == current, "signatures": len(store.signatures(name, digest))})
        if verify:
            problems.extend(store.verify_version(name, digest))
    if current and not store.has_version(name, current):
        problems.append(f"{name}: current points at {current}, which is not staged")
    return {"current": current, "previous": store.previous(name), "versions": versions,
            "rejected": store.rejections(name)}


def run(module):
    """model_info's whole run: describe the named model (or every model), exit or fail."""
    store = Store(module.params["store_dir"])
    models, problems = {}, []
    try:
        names = [module.params["name"]] if module.params["name"] else store.models(with_rejected=True)
        for name in names:
            models[name] = describe_model(store, name, module.params["verify"], problems)
        if module.params["verify"]:
            problems.extend(store.verify_blobs())
    except StoreError as exc:
        module.fail_json(msg=exc.msg)
    module.exit_json(changed=False, models=models, intact=not problems, problems=problems)
