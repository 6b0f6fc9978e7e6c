"""Build the C accelerators: every `services/<service>/_<name>.c` becomes `services.<service>._<name>`.

Each accelerator has a pure-Python twin that gives the same results (tests compare the two), so
the build of each is optional: on a machine without a C compiler the install still succeeds and
the services run their slower Python path, saying so in their start-up log.
"""

from pathlib import Path

from setuptools import Extension, setup


def accelerators() -> list[Extension]:
    return [
        Extension(
            ".".join(source.with_suffix("").parts),
            [str(source)],
            # the service's own headers (e.g. aggregator/_msgpack.h): an edit to one rebuilds the module
            depends=[str(header) for header in sorted(source.parent.glob("_*.h"))],
            optional=True,
            extra_compile_args=["-O2"],
        )
        for source in sorted(Path("services").glob("*/_*.c"))
    ]


setup(ext_modules=accelerators())
