"""python -m edgeml_serve --config /etc/edgeml/serve.yml"""

import argparse
import logging
import sys

import uvicorn

from .app import Server
from .config import ConfigError
from .connections import protocol_class


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
    config = server.config
    # The connection limits are read from the configuration in force when a connection opens,
    # so a reload (SIGHUP) applies new ones to new connections; bind and port need a restart.
    uvicorn.run(server.app(), host=config.bind, port=config.port,
                http=protocol_class(lambda: server.config, server.events), ws="none",
                limit_concurrency=config.limit_concurrency,
                timeout_keep_alive=config.keep_alive_timeout,
                log_level="warning", access_log=False, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
