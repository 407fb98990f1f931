"""``python -m tilefn.server``: run a tilefn server."""

from __future__ import annotations

import argparse
import asyncio

from tilefn.sandbox import SandboxUnavailableError

from ._app import serve
from ._config import ConfigError, add_arguments, from_arguments
from ._logging import configure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tilefn serve", description="Run a tilefn server.")
    add_arguments(parser)
    config = from_arguments(parser.parse_args(argv))
    try:
        configure(config.log_level, config.log_format)
        asyncio.run(serve(config))
    except (SandboxUnavailableError, ConfigError) as exc:
        raise SystemExit(f"tilefn: cannot start: {exc}") from None


if __name__ == "__main__":
    main()
