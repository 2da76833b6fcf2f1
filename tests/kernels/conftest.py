"""Fixtures the kernel tests share: the LOOPCODER_KERNELS mode a test runs under, and a spy
that records which implementation a dispatcher called."""

import pytest


@pytest.fixture
def kernel_mode(request, monkeypatch):
    """LOOPCODER_KERNELS for the test, from indirect parametrization: None (unset: automatic),
    "torch" or "triton"."""
    mode = request.param
    if mode is None:
        monkeypatch.delenv("LOOPCODER_KERNELS", raising=False)
    else:
        monkeypatch.setenv("LOOPCODER_KERNELS", mode)
    return mode


@pytest.fixture
def spy(monkeypatch):
    """spy(module, name) -> the list that gets `name` each time module.name is called (it still runs)."""

    def watch(module, name: str) -> list[str]:
        calls: list[str] = []
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: calls.append(name) or original(*a, **k))
        return calls

    return watch
