"""Shared by the test_hostile*.py modules: a pytest plugin (``pytest_plugins`` in conftest.py).

``server_still_right`` runs after each hostile test and checks that the same server still runs
a normal UDF correctly; ``outcome`` runs inside UDFs (pickled by value, this module is not
installed) and names the errno an attack met.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tilefn.client import Client


@pytest.fixture
def server_still_right(client: Client) -> Iterator[None]:
    yield
    assert client.exec(lambda a: float(a.sum()), np.arange(10.0)) == 45.0


def outcome(action: Any) -> str:
    """Run action; say "allowed" or the errno name of the OSError it raised."""
    import errno

    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "allowed"
