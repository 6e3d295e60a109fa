"""The entry point and what a step is granted, discovered at run time.

The runner gives a step its mounts as standard WASI preopens (one per
mount; `mutate-directory` when writable) and its arguments as the standard
WASI arguments (the step name, then exactly the manifest's `args`), so this
needs no Cordon-specific interface and sees what any WASI program sees.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional

from . import _runtime


@dataclass(frozen=True)
class Mount:
    """A granted directory: its guest path (such as `/in`), where to open
    its files (the same path in a component; a temporary directory in a
    native test), and whether the step may change it."""

    guest: str
    path: str
    writable: bool


class MountError(Exception):
    """A mount the step asked for is not granted (or not uniquely)."""


@dataclass
class Context:
    """What the step was granted: `args` (after the step name) and
    `mounts`."""

    args: List[str] = field(default_factory=list)
    mounts: List[Mount] = field(default_factory=list)

    @staticmethod
    def from_runtime() -> "Context":
        """The grants of this run; natively, the process arguments and no
        mounts."""
        return Context(list(sys.argv[1:]), _runtime_mounts())

    def option(self, name: str) -> Optional[str]:
        """The value of option `name` (`--key value` or `--key=value`); the
        last one wins."""
        found = None
        it = iter(self.args)
        for a in it:
            if a == name:
                found = next(it, None)
            elif a.startswith(name + "="):
                found = a[len(name) + 1 :]
        return found

    def flag(self, name: str) -> bool:
        """Whether flag `name` is among the arguments."""
        return name in self.args

    def mount(self, guest: str) -> Mount:
        """The mount at guest path `guest`."""
        want = guest.rstrip("/")
        for m in self.mounts:
            if m.guest.rstrip("/") == want:
                return m
        granted = ", ".join(m.guest for m in self.mounts)
        if not granted:
            raise MountError(
                f'no mount at {guest}: the step\'s manifest grants no mounts (add a [[mount]] with guest = "{guest}")'
            )
        raise MountError(
            f'no mount at {guest}: the step\'s manifest grants {granted} (add a [[mount]] with guest = "{guest}", or use one of those)'
        )

    def inputs(self) -> Iterator[Mount]:
        """The read-only mounts."""
        return (m for m in self.mounts if not m.writable)

    def output(self) -> Mount:
        """The one writable mount."""
        writable = [m for m in self.mounts if m.writable]
        if not writable:
            raise MountError(
                'the step\'s manifest grants no writable mount (add a [[mount]] with access = "write")'
            )
        if len(writable) > 1:
            names = ", ".join(m.guest for m in writable)
            raise MountError(
                f"the step's manifest grants several writable mounts ({names}); name the one to use"
            )
        return writable[0]


def _runtime_mounts() -> List[Mount]:
    if not _runtime.IN_COMPONENT:
        return []
    preopens = _runtime.imports("preopens")
    types = _runtime.imports("types", "wasi_filesystem_types")
    mounts = []
    for descriptor, guest in preopens.get_directories():
        try:
            writable = types.DescriptorFlags.MUTATE_DIRECTORY in descriptor.get_flags()
        except Exception:
            # Unknown means read-only: the first write then fails with the
            # runner's own error instead of assuming a grant.
            writable = False
        mounts.append(Mount(guest, guest, writable))
    return mounts


def run(step: Callable[[Context], None]) -> None:
    """Runs `step` with the run's Context. Call it from the component's
    `Run.run`. An exception ends the step with exit code 1 and
    `error: <message>` on stderr (where the runner captures it, secret
    values redacted)."""
    try:
        step(Context.from_runtime())
    except Exception as e:  # the step's own errors, whatever their type
        message = str(e) or type(e).__name__
        cause = e.__cause__
        while cause is not None:
            message += f": {cause}"
            cause = cause.__cause__
        print(f"error: {message}", file=sys.stderr)
        _fail()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _fail() -> None:
    if _runtime.IN_COMPONENT:
        from componentize_py_types import Err

        # `wasi:cli/run` returning its error case: exit code 1.
        raise Err(None)
    sys.exit(1)
