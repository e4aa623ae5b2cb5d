"""Baseline for codegen/cpu's GEMM benchmark: float32 GEMM through numpy.

Reads a JSON list of shapes {"name", "M", "N", "K", "transA", "transB"} on
stdin, where A is stored as [M,K] ([K,M] when transA) and B as [K,N] ([N,K]
when transB), both row-major, and C = op(A)·op(B) is written into a
preallocated [M,N] array (numpy passes the transposes to sgemm without
copying). Prints "blas PATH" for the BLAS library loaded into the process,
then one "NAME GFLOPS" line per shape: over repetitions for at least one
second, the same mean that go test -bench reports for our kernels.
Thread count and core type come from the environment (OPENBLAS_NUM_THREADS,
OPENBLAS_CORETYPE).
"""
import json
import sys
import time

import numpy as np


def loaded_blas():
    """Returns the path of the BLAS shared library mapped into this process."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and ("blas" in parts[5] or "mkl" in parts[5]):
                libs.add(parts[5])
    return ",".join(sorted(libs)) or "unknown"


def main():
    shapes = json.load(sys.stdin)
    rng = np.random.default_rng(1)
    w = np.ones((64, 64), np.float32)
    w @ w  # loads the BLAS library
    print("blas", loaded_blas(), flush=True)
    for s in shapes:
        m, n, k = s["M"], s["N"], s["K"]
        a = rng.standard_normal((k, m) if s["transA"] else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if s["transB"] else (k, n), dtype=np.float32)
        opa = a.T if s["transA"] else a
        opb = b.T if s["transB"] else b
        c = np.empty((m, n), np.float32)
        np.matmul(opa, opb, out=c)  # warm up
        # Mean time over at least one second, as go test -bench reports it.
        reps = 0
        start = time.perf_counter()
        while reps < 3 or time.perf_counter() - start < 1.0:
            np.matmul(opa, opb, out=c)
            reps += 1
        elapsed = time.perf_counter() - start
        print(s["name"], 2.0 * m * n * k * reps / elapsed / 1e9, flush=True)


if __name__ == "__main__":
    main()
