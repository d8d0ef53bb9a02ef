# -*- coding: utf-8 -*-
# Copyright (c) edgeml.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Private to edgeml.fleet: durable file operations (fsync before a name publishes the bytes).

A rename is atomic but not durable: after a power cut the new name may point at bytes that
never reached the disk. So a file is fsynced before the rename that publishes it, and the
directory after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile


def fsync_path(path, flags=os.O_RDONLY):
    """fsync one file (or, with O_DIRECTORY, a directory); links are not followed."""
    fd = os.open(path, flags | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fsync_path(path, os.O_RDONLY | os.O_DIRECTORY)


def fsync_tree(top):
    """fsync every regular file and directory under top (links are not followed)."""
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                fsync_path(path)
        fsync_dir(dirpath)


def publish(tmp, dest):
    """Rename a finished file to its name, durably: its bytes first, then the name."""
    fsync_path(tmp)
    os.replace(tmp, dest)
    fsync_dir(os.path.dirname(dest))


def write_file_atomic(path, data, mode=0o640):
    """Write bytes to path by temp file + fsync + rename + fsync of the directory."""
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            os.fchmod(out.fileno(), mode)  # the file we wrote, never what the name points at now
        publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json_dict(path, limit=1 << 20):
    """A small JSON object this collection wrote (a record), or {} when it is missing, unreadable
    or not an object: a record is a hint, never trusted as it is."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.loads(handle.read(limit))
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}
