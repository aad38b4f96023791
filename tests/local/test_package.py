"""Guards: the package's public names, every module importable, documented control API."""

from __future__ import annotations

import importlib
import pkgutil

import steprun.runtime.local as local


def test_every_module_imports_and_lists_what_it_exports() -> None:
    for info in pkgutil.iter_modules(local.__path__):
        module = importlib.import_module(f"{local.__name__}.{info.name}")
        assert module.__doc__, f"{info.name} has no docstring"
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_package_reexports_exactly_its_public_api() -> None:
    assert sorted(local.__all__) == sorted(
        [
            "DEFAULT_JOB_SECONDS",
            "DEFAULT_ORGANIZATION",
            "READY",
            "Fault",
            "InjectedDisconnect",
            "LocalBackend",
            "quiet_injected_disconnects",
            "serve",
        ]
    )
    for name in local.__all__:
        assert getattr(local, name) is not None


def test_control_api_is_documented() -> None:
    from steprun.runtime.local import control, faults

    for endpoint in (
        "POST /_steprun/faults",
        "GET /_steprun/faults",
        "DELETE /_steprun/faults",
        "GET /_steprun/ledger",
    ):
        assert endpoint in (control.__doc__ or "")
    for kind in faults.KINDS:
        assert f"``{kind}``" in (faults.__doc__ or "")
