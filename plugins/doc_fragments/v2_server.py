# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # How the modules that talk to an inference server reach it (inference_health, model_drift,
    # model_shadow); the argument spec is SERVER_ARGS in module_utils/_v2client.py.
    DOCUMENTATION = r"""
options:
  url:
    description: Base URL of the inference server.
    type: str
    default: http://127.0.0.1:8080
  token:
    description: Bearer token for the server.
    type: str
  request_timeout:
    description: Seconds to wait for one HTTP answer.
    type: int
    default: 10
  validate_certs:
    description: Verify the server's TLS certificate (for an https O(url)).
    type: bool
    default: true
  ca_path:
    description: CA bundle for the server's certificate.
    type: path
"""
