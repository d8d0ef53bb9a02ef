# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: what an ONNX file says about itself, read without onnx or protobuf.

Decided here: a file's IR version and operator sets, read from the top of its ModelProto with a
small protobuf reader (standard library only), so a model the installed runtime cannot load is
still described in the error.
"""

from __future__ import annotations

import os


def _varint(handle):
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(handle, end):
    """Yield (field number, wire type, value or (offset, length)) of one protobuf message."""
    while handle.tell() < end:
        key = _varint(handle)
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, _varint(handle)
        elif wire == 2:
            length = _varint(handle)
            start = handle.tell()
            yield number, wire, (start, length)
            handle.seek(start + length)
        elif wire in (1, 5):
            handle.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def read_versions(path):
    """(ir_version, {domain: opset}) from an ONNX file's ModelProto, without reading its graph.

    ModelProto field 1 is ir_version, field 8 opset_import (OperatorSetIdProto: 1 domain,
    2 version). The graph (field 7) is skipped with a seek, so large models cost nothing.
    """
    ir_version, opsets = None, {}
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        for number, wire, value in list(_fields(handle, size)):
            if number == 1 and wire == 0:
                ir_version = value
            elif number == 8 and wire == 2:
                start, length = value
                handle.seek(start)
                domain, version = "", 0
                for sub, sub_wire, sub_value in list(_fields(handle, start + length)):
                    if sub == 1 and sub_wire == 2:
                        handle.seek(sub_value[0])
                        domain = handle.read(sub_value[1]).decode("utf-8", "replace")
                    elif sub == 2 and sub_wire == 0:
                        version = sub_value
                opsets[domain or "ai.onnx"] = version
    if ir_version is None:
        raise ValueError("no ir_version field: not an ONNX model")
    return ir_version, opsets
