"""Generate Python code from protos/tilefn/v1/*.proto, or check that the committed code is current.

    python scripts/genprotos.py          # regenerate into protos/
    python scripts/genprotos.py --check  # regenerate into a temp dir and diff against protos/

The generated files are committed so that installing tilefn never needs grpcio-tools; the check
(run by `make lint` and by tests/test_protos.py) fails when a .proto changed without regenerating.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every tilefn .proto, writing Python, stubs and gRPC code under out_dir."""
    sources = sorted(PROTOS.glob("tilefn/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s.relative_to(PROTOS)) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES))


def drift() -> list[str]:
    """Return the generated files that differ from (or are missing in, or extra in) protos/."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.relative_to(tmp).as_posix() for p in generate(Path(tmp))}
        committed = {
            p.relative_to(PROTOS).as_posix()
            for p in PROTOS.rglob("*")
            if p.name.endswith(GENERATED_SUFFIXES)
        }
        changed = [
            rel
            for rel in sorted(fresh & committed)
            if not filecmp.cmp(Path(tmp) / rel, PROTOS / rel, shallow=False)
        ]
        return sorted(fresh ^ committed) + changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check for drift")
    if parser.parse_args().check:
        stale = drift()
        for rel in stale:
            print(f"generated code is stale: protos/{rel} (run `make protos`)", file=sys.stderr)
        return 1 if stale else 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            target = PROTOS / path.relative_to(tmp)
            shutil.copyfile(path, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
