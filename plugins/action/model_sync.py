# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fill model_sync's registry and link options from the inventory, then run the module on the host.

registries defaults to edgeml_registry_endpoints (set per host by the edgeml.fleet.sites
inventory); username and password to edgeml_registry_username / edgeml_registry_password;
max_bytes_per_second to edgeml_bandwidth_limit. When the host pulls from core (none of its
endpoints is a mirror), max_parallel_pulls defaults to edgeml_max_parallel_pulls, and a run that
downloads holds one of that many per-site slots (lock files on the controller) while the module runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DEFAULTS = {
    "registries": "edgeml_registry_endpoints",
    "username": "edgeml_registry_username",
    "password": "edgeml_registry_password",
    "max_bytes_per_second": "edgeml_bandwidth_limit",
    "pull_slot_group": "edgeml_site",
}
SLOT_DIR = "edgeml-pull-slots"  # under the controller's temp dir (TMPDIR)
POLL = 0.2


def pulls_from_core(registries):
    """True when no endpoint is a site mirror (the site's link carries the pull)."""
    return not any(isinstance(e, dict) and e.get("kind") == "mirror" for e in registries or [])


@contextlib.contextmanager
def pull_slot(group, limit, timeout, clock=time.monotonic, sleep=time.sleep):
    """Hold one of limit slots of group (lock files, flock: a dead holder frees its slot)."""
    root = os.path.join(tempfile.gettempdir(), SLOT_DIR)
    os.makedirs(root, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", group)
    started = clock()
    handles = [open(os.path.join(root, f"{safe}.{n}.lock"), "a+b")  # pylint: disable=consider-using-with
               for n in range(1, limit + 1)]
    held = None
    try:
        while held is None:
            for number, handle in enumerate(handles, 1):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                held = number
                break
            else:
                if clock() - started >= timeout:
                    raise AnsibleActionFail(
                        f"model_sync: no free pull slot for site '{group}' after {timeout} s: "
                        f"{limit} hosts of the site (max_parallel_pulls) are still pulling from "
                        "core. Raise pull_slot_timeout, or the site's link.max_parallel_pulls "
                        "in the inventory, or run again later.")
                sleep(POLL)
        yield {"group": group, "slot": held, "limit": limit,
               "waited": round(clock() - started, 3)}
    finally:
        for handle in handles:
            handle.close()  # closing releases the lock


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        for option, variable in DEFAULTS.items():
            if args.get(option) is None and task_vars.get(variable) is not None:
                args[option] = self._templar.template(task_vars[variable])
        if args.get("max_parallel_pulls") is None and pulls_from_core(args.get("registries")) \
                and task_vars.get("edgeml_max_parallel_pulls") is not None:
            args["max_parallel_pulls"] = self._templar.template(task_vars["edgeml_max_parallel_pulls"])
        limit = int(args.get("max_parallel_pulls") or 0)
        downloads = not self._play_context.check_mode and args.get("state", "active") in ("present", "active")
        slot = contextlib.nullcontext()
        if limit > 0 and downloads:
            group = args.get("pull_slot_group") or "default"
            slot = pull_slot(str(group), limit, int(args.get("pull_slot_timeout") or 3600))
        with slot as held:
            result.update(self._execute_module(module_name="edgeml.fleet.model_sync",
                                               module_args=args, task_vars=task_vars))
        result["pull_slot"] = held
        return result
