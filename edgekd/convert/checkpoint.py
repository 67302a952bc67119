"""``edgekd export CHECKPOINT``: a saved model (``model.pt``) to a parity-checked bundle, in one call.

:func:`export_checkpoint` loads the self-describing checkpoint (:mod:`edgekd.models.saved`), cuts a
self-distilled model at an early exit when asked, takes calibration and parity samples from the data
set the model was trained on, preprocessed as in training (both recorded in the checkpoint; ``data``
overrides them; image folders are read a sample at a time, never whole), exports with
:func:`edgekd.convert.export` and optionally copies the bundle into an Android app's assets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekd.bundle import Bundle, Preprocessing
from edgekd.errors import ConfigError

STAGE = "cli/export"


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, data: str | None = None,
                      data_root: str | None = None, seed: int = 0, limit: int | None = None,
                      formats: Sequence[str] = ("pte", "tflite"), precision: Sequence[str] = ("fp32", "int8"),
                      tflite_converter: str | Sequence[str] = "litert-torch",
                      converter: Mapping[str, str | Sequence[str]] | None = None, calibration: int = 128,
                      parity_samples: int = 200, name: str | None = None, exit: str | None = None,
                      android_assets: str | Path | None = None, progress: bool = True,
                      keep_going: bool = False, observer: str = "histogram") -> Bundle:
    """Export ``checkpoint`` to ``out_dir`` (see the module docstring); returns the saved :class:`Bundle`.

    ``exit`` (e.g. ``"layer1.2"``) exports a self-distilled model cut at that early exit; ``name`` is the
    bundle's model name (default: the architecture, ``name@exit`` for a cut model); ``android_assets``
    also copies the ``.pte``/``.tflite`` files, ``edgekd.json`` and sample images there. ``keep_going``,
    ``observer``: see :func:`edgekd.convert.export`.
    """
    from edgekd import data as D
    from edgekd.convert import export
    from edgekd.models.saved import load_model

    model, meta = load_model(checkpoint)
    if exit:
        from edgekd.models.exits import ExitModel, truncate

        if not isinstance(model, ExitModel):
            raise ConfigError(f"{checkpoint} has no early exits, so --exit {exit} cannot cut it",
                              stage=STAGE, hint="distil with --method self first, or drop --exit")
        model = truncate(model, exit)
        meta["name"] = f"{meta['name']}@{exit}"
    splits = D.load(data or meta.get("data") or "mnist5k", **_same_data(meta, data, data_root, seed, limit))
    x_test, y_test = D.sample(splits.test, parity_samples, seed=seed)  # drawn across classes, no augmentation
    bundle = export(model, (x_test[:1],), formats=formats, precision=precision, keep_going=keep_going,
                    calibration=D.calibration_sample(splits.train, n=calibration, seed=seed), out_dir=out_dir,
                    labels=list(splits.labels), preprocessing=splits.preprocessing(),
                    model_name=name or meta["name"], tflite_converter=tflite_converter, converter=converter,
                    parity_data=(x_test, y_test), progress=progress, observer=observer)
    if android_assets:
        from edgekd.android import copy_to_android_assets, samples_from_tensors

        samples = samples_from_tensors(x_test, y_test, bundle.preprocessing, list(splits.labels))
        copy_to_android_assets(bundle, android_assets, samples=samples)
    return bundle


def _same_data(meta: dict[str, Any], data: str | None, data_root: str | None, seed: int, limit: int | None
               ) -> dict[str, Any]:
    """:func:`edgekd.data.load`'s options that rebuild the inputs the model was trained on: the checkpoint's
    preprocessing (size, resize, channels, mean/std) when ``data`` is the checkpoint's own data set."""
    kw: dict[str, Any] = {"root": data_root, "seed": seed, "limit": limit}
    if meta.get("preprocessing") and (data is None or data == meta.get("data")):
        pre = Preprocessing.from_dict(meta["preprocessing"])
        opts = meta.get("data_options", {})
        kw.update(image_size=pre.size, mean=pre.mean, std=pre.std, channels=pre.channel_order,
                  resize_to=pre.resize_to, root=data_root or opts.get("root"))
    return kw
