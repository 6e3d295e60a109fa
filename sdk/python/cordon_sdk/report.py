"""Facts a step adds to its own execution record.

Natively the facts go to `cordon_sdk.testing`, where a test reads them.
"""

from . import _runtime


def metric(name: str, value: float) -> None:
    """Records a named measurement, such as `rows`; a later value for the
    same name replaces the earlier one."""
    if _runtime.IN_COMPONENT:
        _runtime.imports("report").metric(name, float(value))
    else:
        from . import testing

        testing._metrics[name] = float(value)


def annotate(key: str, value: str) -> None:
    """Records a key/value annotation, such as `model = linear`."""
    if _runtime.IN_COMPONENT:
        _runtime.imports("report").annotate(key, str(value))
    else:
        from . import testing

        testing._annotations[key] = str(value)
