# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fill model_sync's registry options from the inventory, then run the module on the host.

registries defaults to edgeml_registry_endpoints (set per host by the edgeml.fleet.sites
inventory); username and password to edgeml_registry_username / edgeml_registry_password.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

DEFAULTS = {
    "registries": "edgeml_registry_endpoints",
    "username": "edgeml_registry_username",
    "password": "edgeml_registry_password",
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        for option, variable in DEFAULTS.items():
            if args.get(option) is None and task_vars.get(variable) is not None:
                args[option] = self._templar.template(task_vars[variable])
        result.update(self._execute_module(module_name="edgeml.fleet.model_sync",
                                           module_args=args, task_vars=task_vars))
        return result
