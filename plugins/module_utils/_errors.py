# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: the one base of every error a module reports as a clean message."""

from __future__ import annotations


class EdgemlError(Exception):
    """An expected failure; .msg says what failed, where, and what to do."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg
