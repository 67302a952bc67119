"""``edgekd export CHECKPOINT``: a saved model (``model.pt``) to a parity-checked bundle, in one call.

:func:`export_checkpoint` loads the self-describing checkpoint (:mod:`edgekd.models.saved`), cuts a
self-distilled model at an early exit when asked, takes calibration and parity samples from the data
set the model was trained on (recorded in the checkpoint; ``data`` overrides it), exports with
:func:`edgekd.convert.export` and optionally copies the bundle into an Android app's assets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgekd.bundle import Bundle
from edgekd.errors import ConfigError

STAGE = "cli/export"


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, data: str | None = None,
                      data_root: str | None = None, seed: int = 0, limit: int | None = None,
                      formats: Sequence[str] = ("pte", "tflite"), precision: Sequence[str] = ("fp32", "int8"),
                      tflite_converter: str | Sequence[str] = "litert-torch", calibration: int = 128,
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
    splits = D.load(data or meta.get("data") or "mnist5k", root=data_root, seed=seed, limit=limit)
    x_test, y_test = D.as_tensors(splits.test)
    bundle = export(model, (x_test[:1],), formats=formats, precision=precision, keep_going=keep_going,
                    calibration=D.calibration_sample(splits.train, n=calibration, seed=seed), out_dir=out_dir,
                    labels=list(splits.labels), preprocessing=splits.preprocessing(),
                    model_name=name or meta["name"], tflite_converter=tflite_converter,
                    parity_data=(x_test[:parity_samples], y_test[:parity_samples]), progress=progress,
                    observer=observer)
    if android_assets:
        from edgekd.android import copy_to_android_assets, samples_from_tensors

        samples = samples_from_tensors(x_test, y_test, bundle.preprocessing, list(splits.labels))
        copy_to_android_assets(bundle, android_assets, samples=samples)
    return bundle
