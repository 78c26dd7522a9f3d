"""Benchmark ingestion on a real dataset against a naive single-threaded PIL loop.

    python benchmarks/bench_ingestion.py [PATH] [--workers N] [--cold] [--no-naive]

(with the package installed; from a bare checkout: ``PYTHONPATH=src python benchmarks/...``).

PATH defaults to ../shared/datasets/fer2013 (relative to the project root). Prints one table:
source, files, seconds, files/s, split counts and duplicate figures, for ``ingest`` and, in the
same run, for a plain ``PIL.Image.open(...).convert("L")`` loop (the ratio is the speed-up).
By default every file is read once first so both runs see a warm page cache; ``--cold`` instead
evicts the files from the cache (posix_fadvise DONTNEED) before each timed run.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import SPLITS
from fer_pipeline.core.ingestion import (
    apply_duplicate_policy,
    detect_source_kind,
    find_duplicates,
    ingest,
    quality_report,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dataset_files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    return sorted(os.path.join(d, f) for d, _, names in os.walk(path) for f in names)


def warm(files: list[str]) -> None:
    for name in files:
        with open(name, "rb") as handle:
            handle.read()


def evict(files: list[str]) -> None:
    """Drop the files' pages from the page cache so the next read goes to the disk."""
    for name in files:
        fd = os.open(name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def naive_folder(files: list[str]) -> int:
    """What a first attempt looks like: one file at a time through PIL."""
    from PIL import Image

    decoded = 0
    for name in files:
        try:
            with Image.open(name) as image:
                np.asarray(image.convert("L").resize((48, 48)) if image.size != (48, 48) else image.convert("L"))
            decoded += 1
        except Exception:
            pass
    return decoded


def naive_csv(csv_path: Path) -> int:
    decoded = 0
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                np.array(row["pixels"].split(), dtype=np.uint8).reshape(48, 48)
                decoded += 1
            except Exception:
                pass
    return decoded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013"))
    parser.add_argument("--kind", default="auto")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--cold", action="store_true", help="evict files from the page cache before each run")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive PIL loop")
    parser.add_argument("--progress", action="store_true", help="show the tqdm bar during decode")
    args = parser.parse_args(argv)

    path = Path(args.path)
    kind = detect_source_kind(path) if args.kind == "auto" else args.kind
    files = dataset_files(path)
    prepare = evict if args.cold else warm
    cache = "cold (evicted)" if args.cold else "warm"

    prepare(files)
    start = time.perf_counter()
    result = ingest(path, kind=kind, workers=args.workers, progress=args.progress)
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    duplicates = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    dup_s = time.perf_counter() - start
    keep, dropped = apply_duplicate_policy(result, duplicates, "drop_leaked")
    report = quality_report(result, duplicates, keep, dropped, policy="drop_leaked")

    rows = [("ingest (csv parse)" if kind == "csv" else "ingest (threads, cv2)", result.read, ingest_s)]
    if not args.no_naive:
        prepare(files)
        start = time.perf_counter()
        if kind == "csv":
            naive_n = naive_csv(path if path.is_file() else path / "fer2013.csv")
        else:
            naive_n = naive_folder(files)
        rows.append(("naive PIL loop, 1 thread" if kind != "csv" else "naive csv loop, 1 thread", naive_n,
                     time.perf_counter() - start))

    workers = args.workers if args.workers is not None else f"auto ({min(8, 2 * (os.cpu_count() or 1))})"
    print(f"\nsource: {path}  kind: {kind}  cache: {cache}  cores: {os.cpu_count()}  workers: {workers}\n")
    print(f"| {'run':<26} | {'files':>6} | {'seconds':>7} | {'files/s':>8} |")
    print(f"|{'-' * 28}|{'-' * 8}|{'-' * 9}|{'-' * 10}|")
    for name, n, seconds in rows:
        print(f"| {name:<26} | {n:>6} | {seconds:>7.2f} | {n / seconds:>8.0f} |")
    if len(rows) == 2:
        print(f"\nspeed-up over the naive loop: {rows[1][2] / rows[0][2]:.1f}x")
    print(f"find_duplicates: {dup_s:.2f} s")

    print(f"\nread {report['read']}  kept {len(result.labels)}  quarantined {len(result.quarantine)}  "
          f"warnings {len(result.warnings)}")
    print(f"| {'split':<6} | {'as read':>7} | {'after drop_leaked':>17} |")
    print(f"|{'-' * 8}|{'-' * 9}|{'-' * 19}|")
    for split in SPLITS:
        print(f"| {split:<6} | {int((result.splits == split).sum()):>7} | {report['totals'][split]:>17} |")

    d = duplicates
    print("\n| duplicate figure | byte-identical | pixel-identical |")
    print("|---|---|---|")
    for key in ("groups", "files_in_groups", "cross_split_groups", "train_test_groups", "conflicting_label_groups"):
        print(f"| {key} | {d['byte'][key]} | {d['pixel'][key]} |")
    print(f"\ndrop_leaked drops {len(dropped)} images: {report['reasons']}; "
          f"read {report['read']} = kept {report['kept']} + quarantined {report['quarantined']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
