"""The model runner is where the engine meets the kernels: a kernel failure the user caused
(LOOPCODER_KERNELS) reaches them as a LoopcoderError, with the kernels' own message."""

import pytest

from loopcoder.engine.errors import KernelSettingError, LoopcoderError
from loopcoder.engine.serving.protocol import error_frame
from loopcoder.kernels.dispatch import KernelUnavailableError

from .helpers import tiny_engine


@pytest.mark.parametrize("model_type", ["llama", "iquestloopcoder"])
def test_forced_triton_that_cannot_run_is_a_loopcoder_error(monkeypatch, model_type):
    engine = tiny_engine(model_type)
    monkeypatch.setenv("LOOPCODER_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # CPU tensors: no Triton kernel can run
    message = r"^LOOPCODER_KERNELS=triton, but the Triton kernel of \w+ cannot run: "
    for run in (lambda: engine.generate([1, 2, 3], max_new_tokens=2), lambda: engine.logits([1, 2, 3])):
        with pytest.raises(LoopcoderError, match=message) as raised:
            run()
        assert type(raised.value) is KernelSettingError
        assert isinstance(raised.value.__cause__, KernelUnavailableError)
        assert str(raised.value) == str(raised.value.__cause__)
        assert error_frame(1, raised.value)["message"] == str(raised.value.__cause__)  # what a daemon client reads


def test_an_unknown_kernel_mode_is_a_loopcoder_error(monkeypatch):
    engine = tiny_engine()
    monkeypatch.setenv("LOOPCODER_KERNELS", "cuda")
    with pytest.raises(KernelSettingError, match="LOOPCODER_KERNELS='cuda': expected 'torch' or 'triton'"):
        engine.generate([1, 2, 3], max_new_tokens=1)
