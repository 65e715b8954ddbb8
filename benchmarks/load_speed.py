"""First (decoding) vs cached load of a FER2013 source; prints both times and their ratio.

    python benchmarks/load_speed.py [PATH]   (default: ../shared/data/fer2013.zip)

Uses a fresh, temporary cache folder, so the first load always decodes.
"""

import os
import sys
import tempfile
import time
from pathlib import Path


def main():
    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/fer2013.zip")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FER_REPORT_CACHE"] = cache
        from fer_utils.data import load_dataset  # noqa: PLC0415 (after the cache is set)

        times = []
        for _ in range(2):
            start = time.perf_counter()
            dataset = load_dataset(source)
            times.append(time.perf_counter() - start)
    print(f"{source.name}: {len(dataset)} images")
    print(f"first load (decode + cache write): {times[0]:.2f} s")
    print(f"second load (cache):               {times[1]:.2f} s")
    print(f"speed-up: {times[0] / times[1]:.1f}x")


if __name__ == "__main__":
    main()
