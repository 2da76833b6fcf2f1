"""The one part of the build pyproject.toml cannot state: the optional C kernels of the CPU path,
GGUF blocks (kernels/gguf_cpu.c) and decode attention (kernels/attention/decode_cpu.c). Where
no compiler exists, or it fails, the build goes on without them and loopcoder computes through
torch instead (`loopcoder info` says which)."""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
else:
    compile_args, link_args = ["-O3", "-fopenmp", "-fno-math-errno"], ["-fopenmp"]

setup(ext_modules=[
    Extension("loopcoder.kernels._gguf_cpu", sources=["kernels/gguf_cpu.c"], depends=["kernels/gguf_cpu_simd.h", "kernels/gguf_cpu_api.h", "kernels/cpu_common.h"],
              extra_compile_args=compile_args, extra_link_args=link_args, optional=True),
    Extension("loopcoder.kernels.attention._decode_cpu", sources=["kernels/attention/decode_cpu.c"],
              depends=["kernels/attention/decode_cpu_body.h", "kernels/attention/decode_cpu_dims.h", "kernels/attention/decode_cpu_api.h", "kernels/cpu_common.h"], extra_compile_args=compile_args, extra_link_args=link_args,
              optional=True),
    # One decode step of every layer; it calls the two above through their capsules (gguf_cpu_api.h,
    # attention/decode_cpu_api.h), so it loads only where they do.
    Extension("loopcoder.kernels._decoder_cpu", sources=["kernels/decoder_cpu.c"],
              depends=["kernels/gguf_cpu_api.h", "kernels/attention/decode_cpu_api.h", "kernels/cpu_common.h"],
              extra_compile_args=compile_args, extra_link_args=link_args, optional=True),
])
