"""asv ``timeraw_`` benchmarks: cold import and first calls, in a new process.

asv runs each snippet in a fresh interpreter, many times: after the first
sample numba's on-disk cache is warm, so the medians are the "second
process" start-up the performance target (<= 1 s) is about.
"""
from fastnn.bench import _cases


class Startup:
    timeout = 600
    repeat = (2, 5, 60.0)

    def timeraw_import(self):
        return "import fastnn.functional, fastnn.preprocessing"

    def timeraw_import_and_first_call_of_every_kernel(self):
        return """
import fastnn.functional, fastnn.preprocessing
from fastnn.bench._cases import first_calls
first_calls()
"""


class FirstCall:
    """Import + first call of one kernel (tiny float32 input)."""
    params = [[k.name for k in _cases.KERNELS]]
    param_names = ["kernel"]
    timeout = 600
    repeat = (2, 5, 60.0)

    def setup(self, kernel):
        missing = _cases.KERNELS_BY_NAME[kernel].missing()
        if missing:
            raise NotImplementedError("not implemented yet: " + ", ".join(missing))

    def timeraw_first_call(self, kernel):
        # Importing fastnn.bench._cases imports fastnn itself, so the import
        # is part of the timed snippet, as intended; the tiny data costs ~0.1 ms.
        return f"""
import numpy as np
from fastnn.bench._cases import KERNELS_BY_NAME, SIZES
k = KERNELS_BY_NAME[{kernel!r}]
data = k.setup(*SIZES["tiny"][0], np.float32)
run, _ = k.build("fastnn", data)
run()
"""
