"""Build a tar archive in memory from (name, type, payload) members: the test layers' one maker."""

import io
import tarfile


def tar_bytes(members):
    """Regular files carry their bytes as payload; links carry their target."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload
                tar.addfile(info)
    return raw.getvalue()
