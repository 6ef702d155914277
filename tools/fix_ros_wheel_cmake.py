"""Rewrite build-machine paths baked into the ros-* wheels' CMake export files.

The Jazzy wheels were built in a manylinux container whose Python lived in
/opt/python/cp311-cp311; the exported *__rosidl_generator_py targets carry that include path,
which makes any downstream rosidl_generate_interfaces() fail with "Imported target ... includes
non-existent path". Idempotent; run with the venv's python.
"""
import glob
import os
import re
import sys
import sysconfig

import numpy


def main() -> int:
    prefix = sys.prefix
    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    if not os.path.exists(os.path.join(py_inc, "Python.h")):
        print(f"Python.h not found in {py_inc}: install the Python 3.11 headers "
              "(Debian: python3.11-dev)", file=sys.stderr)
        return 1
    pat_np = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")
    pat_py = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
    changed = 0
    for path in glob.glob(os.path.join(prefix, "share", "*", "cmake", "*.cmake")):
        with open(path) as fh:
            text = fh.read()
        if "/opt/python/" not in text:
            continue
        new = pat_py.sub(py_inc, pat_np.sub(np_inc, text))
        if new != text:
            with open(path, "w") as fh:
                fh.write(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: patched {changed} file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
