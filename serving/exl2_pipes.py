"""Runs in its own process (Dagster Pipes): exllamav2's converter, then reports the build back.

`python -m serving.exl2_pipes --source DIR --output DIR --measurement FILE --bits 4.5`
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from serving.quantization import converter_command


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--measurement", type=Path, required=True)
    parser.add_argument("--bits", type=float, required=True)
    parser.add_argument("--head-bits", type=int, default=6)
    args = parser.parse_args()
    with open_dagster_pipes() as pipes:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("EXL2 conversion needs CUDA; this Pipes target has none.")
        reused = args.measurement.is_file()
        started = time.perf_counter()
        args.output.mkdir(parents=True, exist_ok=True)
        command = converter_command(sys.executable, args.source, args.output, args.measurement,
                                    args.bits, args.head_bits)
        pipes.log.info(" ".join(command))
        subprocess.run(command, check=True)
        work = args.output.with_name(args.output.name + ".work")
        if not reused and (work / "measurement.json").is_file():
            shutil.copy2(work / "measurement.json", args.measurement)  # kept for other bit rates
        shutil.rmtree(work, ignore_errors=True)
        size = sum(path.stat().st_size for path in (args.output / "model").glob("*.safetensors"))
        pipes.report_asset_materialization(metadata={
            "bits_per_weight": args.bits, "measurement_reused": reused,
            "seconds": round(time.perf_counter() - started, 1), "size_mb": round(size / 2**20, 1),
            "path": str(args.output / "model")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
