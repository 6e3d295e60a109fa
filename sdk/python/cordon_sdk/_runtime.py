"""Whether this code runs inside a component, and the bindings if so.

componentize-py generates the `wit_world` package into the component it
builds; it does not exist anywhere else. Its absence means a native run
(a step's unit tests), where `cordon_sdk.testing` stands in for the runner.
Nothing here calls the runner at import time: componentize-py runs module
top levels while it builds the component, when no step is running. But
every binding module the SDK may use is *imported* then: the component is
a snapshot of the interpreter after that import, and a module first
imported later has no file to load from.
"""

import importlib
from types import ModuleType
from typing import Optional

try:
    import wit_world as _wit_world  # noqa: F401  (only inside a component)

    IN_COMPONENT = True
except ImportError:
    IN_COMPONENT = False

# The generated modules the SDK calls (those of wasi:http exist only in the
# step-http world).
_BINDINGS = (
    "secrets",
    "report",
    "preopens",
    "types",
    "wasi_filesystem_types",
    "streams",
    "poll",
    "outgoing_handler",
    "wasi_http_types",
)


def imports(*names: str) -> ModuleType:
    """The first of the generated `wit_world.imports.<name>` modules that
    exists (componentize-py renames an interface whose name another
    interface shares, such as `types`, after its package)."""
    for name in names:
        module = optional_import(name)
        if module is not None:
            return module
    raise ImportError(
        f"the component's bindings have none of {', '.join(names)}; "
        "build it with `cordon build` (componentize-py -w cordon:step/step)"
    )


def optional_import(name: str) -> Optional[ModuleType]:
    """`wit_world.imports.<name>`, or None when the world lacks it."""
    try:
        return importlib.import_module(f"wit_world.imports.{name}")
    except ImportError:
        return None


if IN_COMPONENT:
    import componentize_py_types  # noqa: F401  (Err, for the bindings' errors)

    for _name in _BINDINGS:
        optional_import(_name)
