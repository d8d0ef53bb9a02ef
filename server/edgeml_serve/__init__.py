"""edgeml-serve: a small KServe Open Inference Protocol (v2) server for ONNX Runtime.

Deployed by the edgeml.fleet.inference_runtime role into /opt/edgeml/server and run by the
edgeml-inference systemd unit as ``python -m edgeml_serve --config /etc/edgeml/serve.yml``.
"""

__version__ = "0.1.0"
