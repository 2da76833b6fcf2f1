"""Which device a model runs on: `--device auto` and Apple's GPU (mps), decided from what torch
reports, forced here since the CI has no Mac. Nothing here runs a model on mps."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from loopcoder.engine import hardware
from loopcoder.engine.errors import InvalidRequestError, ModelLoadError
from loopcoder.engine.hardware import MPS_FALLBACK_ENV, allow_mps_fallback, mps_note, pick_device
from loopcoder.engine.loader import resolve_device
from loopcoder.engine.quantization import check_quant_device
from loopcoder.lsp.features.engine_loading import serves_device


@pytest.mark.parametrize("cuda, mps, want", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_auto_takes_cuda_then_mps_then_the_cpu(cuda, mps, want):
    assert pick_device("auto", cuda=cuda, mps=mps) == want


def test_named_devices_pass_and_mps_without_mps_is_refused_saying_why():
    for name in ("cpu", "cuda", "cuda:1", "mps", "mps:0"):
        assert pick_device(name, cuda=False, mps=True) == name
    for name in ("mps", "mps:0"):
        with pytest.raises(ModelLoadError, match=f"--device {name}: this torch cannot use Apple's GPU.*--device cpu"):
            pick_device(name, cuda=True, mps=False)


@pytest.mark.parametrize("device, platform, preset, want_env, on", [
    ("mps", "darwin", None, "1", True),
    ("mps:0", "linux", None, "1", True),
    ("auto", "darwin", None, "1", True),
    ("auto", "linux", None, None, False),  # auto never picks mps off macOS
    ("cpu", "darwin", None, None, False),
    ("cuda", "darwin", None, None, False),
    ("mps", "darwin", "0", "0", False),  # the user's choice is kept: such ops then raise
])
def test_the_mps_fallback_is_set_before_torch_for_a_device_that_may_be_mps(monkeypatch, device, platform, preset,
                                                                           want_env, on):
    monkeypatch.setattr(hardware.sys, "platform", platform)
    if preset is None:
        monkeypatch.delenv(MPS_FALLBACK_ENV, raising=False)
    else:
        monkeypatch.setenv(MPS_FALLBACK_ENV, preset)
    assert allow_mps_fallback(device) is on
    assert hardware.os.environ.get(MPS_FALLBACK_ENV) == want_env


def test_the_mps_note_says_where_unsupported_ops_go(monkeypatch):
    monkeypatch.setenv(MPS_FALLBACK_ENV, "1")
    assert "run on the CPU" in mps_note() and "CI does not run" in mps_note()
    monkeypatch.setenv(MPS_FALLBACK_ENV, "0")
    assert "fails with NotImplementedError" in mps_note()


def test_the_loader_resolves_auto_by_what_torch_reports(monkeypatch, caplog):
    """As on a Mac: torch.backends.mps.is_available() forced; the device is chosen, not used."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with caplog.at_level(logging.WARNING, logger="loopcoder.engine.loader"):
        assert resolve_device("auto") == torch.device("mps")
    assert any("running on mps" in r.message for r in caplog.records)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="cannot use Apple's GPU"):
        resolve_device("mps")


def test_fp8_on_mps_is_refused_at_once():
    with pytest.raises(InvalidRequestError, match="MPS has no float8"):
        check_quant_device("fp8", torch.device("mps"))
    check_quant_device("int4", torch.device("mps"))  # the torch references run wherever torch does


def test_a_daemon_serves_an_auto_editor_on_any_device():
    assert serves_device({"device": "mps"}, "auto") and serves_device({"device": "cpu"}, "cpu")
    assert not serves_device({"device": "cpu"}, "mps")


def test_the_cli_sets_the_fallback_before_torch_loads_and_refuses_mps_here():
    """`loopcoder info --device mps` on this Linux machine: the variable is set before torch is
    imported, and the missing MPS is named before any model is read."""
    script = ("import os, sys\n"
              "os.environ.pop('PYTORCH_ENABLE_MPS_FALLBACK', None)\n"
              "from loopcoder.lsp.cli import main\n"
              "code = main(['info', '--device', 'mps'])\n"
              "print(os.environ.get('PYTORCH_ENABLE_MPS_FALLBACK'), code)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["1", "2"], done.stderr
    assert "this torch cannot use Apple's GPU" in done.stderr
