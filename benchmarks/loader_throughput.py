"""Throughput of the activation loader (``neurolake.query.loader.ActivationDataset``) against one
plain chunked read of the same layers.

Writes the run of ``benchmarks/scan_scale.py`` (float16, standard normal activations), then times
one plain read of every layer (the baseline), and one epoch of the loader through a PyTorch
``DataLoader`` over every layer with a metadata column, shuffled through a 16,384-row buffer,
with 0 and 2 workers, rows collated by the DataLoader and whole batches from the array buffer. Prints frames per second and the ratio to the baseline.

    python benchmarks/loader_throughput.py [--frames 200000] [--layers 4] [--units 250] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_scale import build_run, read_every_layer

from neurolake.store import Lake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--units", type=int, default=250)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--dir", help="where to write the run (default: a temporary directory)")
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from neurolake.query.loader import ActivationDataset

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp())
    try:
        url = str(root / "lake")
        lake = Lake.create(url)
        t0 = time.perf_counter()
        build_run(lake, args.frames, args.layers, args.units)
        print(
            f"wrote {args.frames:,} frames x {args.layers} layers x {args.units} units in {time.perf_counter() - t0:.1f} s"
        )
        run = lake.run("big")
        read_every_layer(run)  # warm the page cache
        baseline = read_every_layer(run)
        frames = run.committed_frame_ids().size
        print(f"plain chunked read of every layer: {baseline:.2f} s ({frames / baseline:,.0f} frames/s)")
        for workers, batched in ((0, False), (2, False), (0, True), (2, True)):
            data = ActivationDataset(
                url, "big", run.layer_names, columns=["phoneme"], batch_size=args.batch if batched else None
            )
            loader = DataLoader(data, batch_size=None if batched else args.batch, num_workers=workers)
            t0 = time.perf_counter()
            seen = 0
            for batch in loader:
                seen += int(batch["frame_id"].numel())
                torch.stack([batch[layer] for layer in run.layer_names])
            seconds = time.perf_counter() - t0
            assert seen == frames
            print(
                f"loader, {workers} workers, shuffled, batches of {args.batch} "
                f"{'from the array buffer' if batched else 'collated from rows'}: {seconds:.2f} s "
                f"({frames / seconds:,.0f} frames/s), ratio to the plain read {seconds / baseline:.2f}"
            )
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
