"""Builds only the native extension rlsuite._C from cuda_ext/ (metadata is in pyproject.toml).

C++ sources always; CUDA sources too when the installed torch has CUDA and nvcc is present.
With no sources in cuda_ext/ (or no torch at build time) the package installs pure-Python and
the replay buffer uses its pure-torch reference operators.
"""
from pathlib import Path

from setuptools import setup


def extensions():
    cpp = sorted(str(p) for p in Path("cuda_ext").glob("*.cpp"))
    if not cpp:
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        return [], {}
    cu = sorted(str(p) for p in Path("cuda_ext").glob("*.cu"))
    if cu and torch.version.cuda and cpp_extension.CUDA_HOME:
        ext = cpp_extension.CUDAExtension("rlsuite._C", cpp + cu, extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]})
    else:
        ext = cpp_extension.CppExtension("rlsuite._C", cpp, extra_compile_args=["-O3"])
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
