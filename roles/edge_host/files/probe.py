"""Read-only prerequisite probe for the edge_host role; prints one JSON object.

Written for old Pythons too, so that a host whose Python is too old gets a clear message.
"""
import json
import os
import shutil
import sys


def nearest_dir(path):
    while not os.path.isdir(path):
        path = os.path.dirname(path) or "/"
    return path


def venv_works():
    try:
        import venv  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        import ensurepip  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except ImportError:
        return False
    return True


store, ca_bundle = sys.argv[1], sys.argv[2]
measured_at = nearest_dir(store)
print(json.dumps({
    "python": "%d.%d.%d" % sys.version_info[:3],
    "venv": venv_works(),
    "systemd": os.path.isdir("/run/systemd/system"),
    "ca_certificates": os.path.isfile(ca_bundle),
    "free_mb": shutil.disk_usage(measured_at).free // 1048576,
    "measured_at": measured_at,
}))
