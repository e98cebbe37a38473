"""pip install ./bindings/python: builds the extension through the project's
CMake (offline: Debian's setuptools, wheel, pybind11-dev and the C++
dependencies scripts/install-deps.sh installs).

SLUICE_BUILD_DIR reuses a configured CMake build directory (e.g. build/ of
scripts/test.sh) instead of a fresh one; SLUICE_JOBS sets parallelism.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def project_version() -> str:
    for line in (ROOT / "CMakeLists.txt").read_text().splitlines():
        if line.startswith("project(sluice VERSION"):
            return line.split()[2]
    raise RuntimeError("no version in CMakeLists.txt")


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        build = pathlib.Path(os.environ.get("SLUICE_BUILD_DIR") or HERE / "build-pip").resolve()
        args = ["cmake", "-S", str(ROOT), "-B", str(build), "-DSLUICE_PYTHON=ON"]
        # A reused build keeps its settings (its Python must be this one's).
        if not (build / "CMakeCache.txt").exists():
            args += ["-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DPython3_EXECUTABLE={sys.executable}",
                     "-DSLUICE_BUILD_TESTS=OFF", "-DSLUICE_BUILD_EXAMPLES=OFF", "-DSLUICE_BUILD_ISTIO=ON"]
            if shutil.which("ninja"):
                args += ["-G", "Ninja"]
            if shutil.which("ccache"):
                args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
        subprocess.check_call(args)
        subprocess.check_call(["cmake", "--build", str(build), "--target", "sluice_python", "-j",
                               os.environ.get("SLUICE_JOBS", "2")])
        built = next((build / "bindings" / "python" / "sluice").glob("_sluice*.so"))
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)


setup(
    name="sluice",
    version=project_version(),
    description="An in-process HTTP gateway with Istio's semantics, for tests and host programs",
    packages=["sluice"],
    package_data={"sluice": ["py.typed", "*.pyi"]},
    ext_modules=[Extension("sluice._sluice", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    # Named as the module, so that pytest_plugins = ["sluice.testing"] or
    # -p sluice.testing finds it registered instead of registering it twice.
    entry_points={"pytest11": ["sluice.testing = sluice.testing"]},
    python_requires=">=3.9",
    zip_safe=False,
)
