"""retain_freed_memory sets glibc's thresholds: large blocks come from the heap and stay there."""

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

from pyro_sus.allocator import retain_freed_memory

# Run in a fresh interpreter: this process's heap has the history of every test before. The block
# comes straight from malloc, so that it sits at the top of the heap, where a trim would take it.
PROBE = """
import ctypes, sys
from pyro_sus.allocator import retain_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
if sys.argv[1] == "retained":
    assert retain_freed_memory()
size = 16 * 2**20  # twice an enumerated Table II step's largest temporaries
block = libc.malloc(size)
libc.memset(block, 1, size)
mapped_while_alive = libc.mallinfo2().hblkhd >= size
libc.free(block)
print(mapped_while_alive, libc.mallinfo2().fordblks >= size)
"""


def _glibc_has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _glibc_has_mallinfo2(),
                    reason="glibc 2.33+ only (mallinfo2)")
@pytest.mark.parametrize("setting, mapped, kept", [("default", True, False), ("retained", False, True)])
def test_large_blocks_come_from_the_heap_and_stay_after_free_only_when_retained(setting, mapped, kept):
    out = subprocess.run([sys.executable, "-c", PROBE, setting], check=True, capture_output=True, text=True)
    assert out.stdout.split() == [str(mapped), str(kept)]


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match="keep_bytes"):
        retain_freed_memory(-1)
