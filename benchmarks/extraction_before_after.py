"""Extract the demo's tiny models with two versions of the library and compare the files bit for bit.

    git archive <old-commit> src | tar -x -C /tmp/old
    python benchmarks/extraction_before_after.py /tmp/old/src [--out /tmp/before_after]

Each family's tiny model (built as the demo builds it, the demo's extraction settings: batch 16,
attention_layers all, tiny_clip with embedding_layers [0, -1]) extracts the same 20 synthetic JPEGs once
with the library under OLD_SRC and once with this checkout's, each in its own process; then
`compare_outputs.py` compares the two folders (datasets value for value, attributes listed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_SRC = HERE.parent / "src"
FAMILIES = {"dinov2": {}, "dinov3": {}, "mae": {}, "clip": {"embedding_layers": [0, -1]}, "siglip": {},
            "resnet": {"tiny": {"image_size": 128}}}

RUN = r"""
import sys, json
from pathlib import Path
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.models.registry import load_adapter
family, folder, images, out, extra = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), json.loads(sys.argv[5])
paths = sorted(str(p) for p in Path(images).glob("*.jpg"))
adapter = load_adapter(family, folder)
settings = ExtractionSettings(batch_size=16, embedding_layers=extra.get("embedding_layers", []), device="cpu")
extract([Path(p).stem for p in paths], paths, adapter, out / "embeddings.h5", out / "attention.h5", settings,
        {"model": "tiny_" + family})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old_src")
    parser.add_argument("--out", default="/tmp/extraction_before_after")
    args = parser.parse_args()
    out = Path(args.out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    setup = (f"import numpy as np; from PIL import Image\n"
             f"rng = np.random.default_rng(0)\n"
             f"for i in range(20):\n"
             f"    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)\n"
             f"    Image.fromarray(small).resize((320 + 8 * i, 240), Image.BICUBIC).save('{images}/im%02d.jpg' % i, quality=90)\n")
    environment = os.environ | {"PYTHONPATH": str(NEW_SRC)}
    subprocess.run([sys.executable, "-c", setup], check=True, env=environment)
    import json
    for family, extra in FAMILIES.items():
        folder = out / "models" / family
        if not folder.exists():
            build = (f"from encoderlens.models.registry import build_tiny; "
                     f"build_tiny({family!r}, {str(folder)!r}, seed=0, **{extra.get('tiny', {})!r})")
            subprocess.run([sys.executable, "-c", build], check=True, env=environment)
        for side, src in (("before", args.old_src), ("after", str(NEW_SRC))):
            subprocess.run([sys.executable, "-c", RUN, family, str(folder), str(images),
                            str(out / side / family), json.dumps(extra)], check=True,
                           env=os.environ | {"PYTHONPATH": src}, capture_output=True)
    done = subprocess.run([sys.executable, str(HERE / "compare_outputs.py"), str(out / "before"),
                           str(out / "after")])
    raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
