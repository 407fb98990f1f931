"""The tilefn gRPC server (trusted side): configuration, wiring, services, status mapping."""

from ._app import TilefnServer, serve
from ._config import ConfigError, ServerConfig

__all__ = ["ConfigError", "ServerConfig", "TilefnServer", "serve"]
