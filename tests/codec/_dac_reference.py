"""Reference outputs of descript-audio-codec itself, run with ``.venv-ref/bin/python``.

Usage: ``_dac_reference.py KWARGS_JSON INPUT_NPY OUT_DIR [SEED]``. Builds ``dac.DAC(**kwargs)``
with seeded random weights (every parameter perturbed, so a mis-mapped bias, Snake alpha
or weight-norm gain shows), saves it with DAC's own ``save(..., package=False)`` (the
format of DAC's released weights) as ``OUT_DIR/weights.pth``, and writes for the input
``[1, 1, T]`` float32: ``codes.npy`` (``[1, n_q, F]``, DAC's encode in eval mode) and
``audio.npy`` (DAC's decoder output from those codes, ``[1, 1, L]``).

Not a test module: it imports ``dac``, which exists only in ``.venv-ref``.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    import dac

    kwargs = json.loads(sys.argv[1])
    x = torch.from_numpy(np.load(sys.argv[2]))
    out = Path(sys.argv[3])
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = dac.DAC(**kwargs).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif name.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.7, 1.3))
    model.save(str(out / "weights.pth"), package=False)
    with torch.no_grad():
        z = model.encoder(model.preprocess(x, kwargs.get("sample_rate")))
        _, codes, _, _, _ = model.quantizer(z)
        zq = model.quantizer.from_codes(codes)[0]
        y = model.decoder(zq)
    np.save(out / "codes.npy", codes.numpy())
    np.save(out / "audio.npy", y.numpy())


if __name__ == "__main__":
    main()
