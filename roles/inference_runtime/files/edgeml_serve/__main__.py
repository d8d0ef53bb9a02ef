"""python -m edgeml_serve --config /etc/edgeml/serve.yml"""

import argparse
import logging
import sys

import uvicorn

from .app import Server
from .config import ConfigError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="edgeml_serve", description=__doc__)
    parser.add_argument("--config", default="/etc/edgeml/serve.yml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        server = Server(args.config)
    except (ConfigError, OSError) as exc:
        print(f"edgeml-serve: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(server.app(), host=server.config.bind, port=server.config.port,
                log_level="warning", access_log=False, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
