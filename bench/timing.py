"""Timing helper shared by the benchmarks (run them as scripts: `python bench/bench_x.py`)."""
import statistics
import time


def median_ms(fn, repeats: int = 50) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
