"""Regenerate the Python code for proto/vane/v1 into the SDK package (sdk/python/vane/v1).

The generated code is committed so that the SDK installs from a plain checkout without protoc;
tests/unit/test_proto_generated.py fails when what is committed differs from what this makes.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
SDK_ROOT = PROTO_ROOT.parent / "sdk" / "python"


def generate(out_root: Path) -> list[Path]:
    """Write the generated modules under out_root/vane/v1 and return their paths."""
    target = out_root / "vane" / "v1"
    if target.exists():
        for old in target.glob("*_pb2*.py*"):
            old.unlink()
    target.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "vane" / "v1").glob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        *sources,
    ]
    # protoc finds protoc-gen-mypy on PATH; it sits beside this interpreter in a venv.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = target / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated from proto/vane/v1 by proto/generate.py: do not edit."""\n')
    return sorted(target.glob("*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else SDK_ROOT
    generate(out)
    shutil.rmtree(out / "vane" / "v1" / "__pycache__", ignore_errors=True)
