"""edgeml-serve: a small KServe Open Inference Protocol (v2) server for ONNX Runtime.

Installed by the edgeml.fleet.inference_runtime role into the runtime's virtual environment and
run by the edgeml-inference systemd unit as ``python -m edgeml_serve --config /etc/edgeml/serve.yml``.
"""

from importlib.metadata import version

__version__ = version("edgeml-serve")  # pyproject.toml holds it
