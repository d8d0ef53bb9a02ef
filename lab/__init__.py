"""The edgeml.fleet lab: a registry, a site mirror and systemd edge hosts in Docker containers.

Run it with ``python -m lab up|down|status`` from the repository root (``make lab-up`` does).
Everything it generates lives in ``lab/.state/`` (git-ignored); containers, networks and
volumes carry the label ``io.edgeml.lab=true``.
"""
