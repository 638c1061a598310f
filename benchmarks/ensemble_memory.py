"""What a loaded ensemble program holds in memory: members sharing their base model's weights
(``load_program`` on the ensemble) against each member loaded alone, as before.

Each way runs in a fresh process (so neither sees the other's memory): it loads the program (timed),
predicts the first ``--n`` rows of ``--data``, then records its resident memory (what serving it
holds) and peak memory; the two ways' probabilities must agree.

    python benchmarks/ensemble_memory.py --program runs/agnews-ens-42/seed-42/ensemble \
        [--data ag_news/test.jsonl] [--n 32]

Ends with ``shared vs members alone: resident memory …x smaller, probabilities equal (max |diff| …)``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_ROOT, machine, peak_rss_mb, read_jsonl


def resident_mb() -> float:
    """This process's resident memory now (``VmRSS``), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


def measure(way: str, program_dir: Path, rows: list[dict], out: Path) -> None:
    """Load the ensemble one ``way`` ("shared" or "alone"), predict ``rows``, write what was seen to ``out``."""
    from promptlearning.training.ensemble_program import EnsembleProgram
    from promptlearning.training.program import load_program, read_program_spec

    before, start = resident_mb(), time.perf_counter()
    if way == "shared":
        ensemble = load_program(program_dir, device="cpu")
    else:
        spec = read_program_spec(program_dir)
        members = [(load_program(program_dir / m["path"], device="cpu"), float(m["weight"])) for m in spec.members]
        ensemble = EnsembleProgram(spec, members)
    seconds = time.perf_counter() - start
    probabilities = ensemble.distribution(rows).tolist()  # touches every weight: mapped files count too
    resident = resident_mb() - before
    result = {"resident": resident, "peak": peak_rss_mb(), "seconds": seconds, "probabilities": probabilities}
    out.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, required=True, help="a saved ensemble program directory")
    parser.add_argument("--data", default="ag_news/test.jsonl", help="rows to predict, under the data root")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--way", choices=["shared", "alone"], help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = read_jsonl(DATA_ROOT / args.data, args.n)
    if args.way:
        measure(args.way, args.program, rows, args.out)
        return
    print(f"machine: {machine()}")
    print(f"program: {args.program}, {len(rows)} rows of {args.data}")
    seen = {}
    with tempfile.TemporaryDirectory() as scratch:
        for way in ("alone", "shared"):
            out = Path(scratch) / f"{way}.json"
            command = [sys.executable, __file__, "--program", str(args.program), "--data", args.data,
                       "--n", str(args.n), "--way", way, "--out", str(out)]  # fmt: skip
            subprocess.run(command, check=True)
            seen[way] = json.loads(out.read_text())
    print(f"{'members':<16}{'resident':>22}{'peak':>10}{'load time':>12}")
    for way, label in (("alone", "each alone"), ("shared", "sharing a base")):
        r = seen[way]
        print(f"{label:<16}{r['resident']:>19.0f} MB{r['peak']:>7.0f} MB{r['seconds']:>10.1f} s")
    diff = max(
        abs(a - b)
        for row_a, row_b in zip(seen["alone"]["probabilities"], seen["shared"]["probabilities"], strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )
    ratio = seen["alone"]["resident"] / seen["shared"]["resident"]
    verdict = "equal" if diff < 1e-5 else "DIFFERENT"
    print(f"shared vs members alone: resident memory {ratio:.2f}x smaller, "
          f"probabilities {verdict} (max |diff| {diff:.1e})")  # fmt: skip


if __name__ == "__main__":
    main()
