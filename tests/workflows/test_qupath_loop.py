"""The QuPath loop: prediction GeoJSON out, corrected GeoJSON in, only the corrections become labels,
and a fine-tune from the same checkpoint fixes the corrected region."""

import json
import uuid

import numpy as np
import pytest
from scipy import ndimage

from histoseg.cli import main
from histoseg.corrections import write_corrections
from histoseg.errors import ConfigError, LabelError
from histoseg.labels.annotations import feature_class_name
from histoseg.labels.corrections import extract_corrections
from histoseg.labels.scribbles import read_scribbles_geojson
from histoseg.report.geojson import PREDICTION_NAME, label_map_to_features
from tests.conftest import ROOT, cli_exit_code, make_labelled_slide

CLASSES = ["background", "interstitium", "tubules", "glomeruli", "other"]
TINY = str(ROOT / "tests" / "conf" / "tiny.yaml")


def square(x0, y0, side, cls, **props):
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": cls}, **props},
    }


def as_qupath_exports(features):
    """What QuPath writes back: an id per object, coordinates re-serialised, the ring starting elsewhere."""
    out = []
    for feature in features:
        geometry = json.loads(json.dumps(feature["geometry"]))
        if geometry["type"] == "Polygon":
            ring = geometry["coordinates"][0][:-1]
            ring = ring[1:] + ring[:1]
            geometry["coordinates"][0] = [[x + 0.01, y] for x, y in ring] + [[ring[0][0] + 0.01, ring[0][1]]]
        out.append({"type": "Feature", "id": str(uuid.UUID(int=len(out))), "geometry": geometry,
                    "properties": dict(feature["properties"])})  # fmt: skip
    return out


def test_only_new_edited_and_reclassified_features_are_kept():
    predicted = [square(0, 0, 10, "tubules", name=PREDICTION_NAME), square(20, 0, 10, "glomeruli", name=PREDICTION_NAME),
                 square(40, 0, 10, "interstitium", name=PREDICTION_NAME)]  # fmt: skip
    corrected = as_qupath_exports(predicted)  # untouched (rounding, other start vertex, ids)
    corrected[1]["properties"]["classification"] = {"name": "tubules"}  # Set class
    corrected[2]["geometry"] = square(40, 0, 14, "x")["geometry"]  # redrawn with the brush
    stroke = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[60, 5], [80, 5]]},
              "properties": {"classification": {"name": "interstitium"}}}  # fmt: skip
    unclassified = square(90, 0, 5, "x")
    del unclassified["properties"]["classification"]
    kept, stats = extract_corrections(predicted, [*corrected, stroke, unclassified])
    assert [feature_class_name(f) for f in kept] == ["tubules", "interstitium", "interstitium"]
    assert [f["geometry"]["type"] for f in kept] == ["Polygon", "Polygon", "LineString"]
    assert (stats.kept, stats.unchanged, stats.unclassified, stats.empty) == (3, 1, 1, 0)
    assert stats.by_class == {"tubules": 1, "interstitium": 2}
    assert kept[0]["properties"]["name"] == "corrected prediction"
    assert all(f["properties"]["histoseg"] == "correction" for f in kept)
    # a boundary moved by more than the tolerance is an edit
    moved = as_qupath_exports([square(0, 0, 12, "tubules")])  # two sides 2 px out: 44 px² / 48 px perimeter
    assert extract_corrections(predicted[:1], moved, tolerance=0.5)[1].kept == 1
    assert extract_corrections(predicted[:1], moved, tolerance=2.0)[1].kept == 0


def test_written_labels_rasterise_as_scribbles_and_nothing_else(tmp_path):
    predicted = [
        square(0, 0, 8, "tubules", name=PREDICTION_NAME),
        square(16, 0, 8, "tubules", name=PREDICTION_NAME),
    ]
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": predicted}))
    corrected = as_qupath_exports(predicted)
    corrected[1]["properties"]["classification"] = {"name": "glomeruli"}
    (tmp_path / "b.geojson").write_text(json.dumps(corrected))  # older QuPath: a bare list
    stats = write_corrections(tmp_path / "a.geojson", tmp_path / "b.geojson", tmp_path / "labels.geojson")
    assert stats.kept == 1
    mask, warnings = read_scribbles_geojson(
        tmp_path / "labels.geojson", CLASSES, shape=(10, 30), scale=1.0, brush_px=1.0
    )
    assert not warnings
    expected = np.full((10, 30), 255, np.uint8)
    expected[0:8, 16:24] = 3  # pixel centres inside or on the boundary of [16, 24] x [0, 8]
    assert np.array_equal(mask, expected)
    # rerun over its own output is fine; a file histoseg did not write, or an input, is never overwritten
    write_corrections(tmp_path / "a.geojson", tmp_path / "b.geojson", tmp_path / "labels.geojson")
    (tmp_path / "mine.geojson").write_text("{}")
    for out in ("mine.geojson", "b.geojson", "labels.txt"):
        with pytest.raises(ConfigError):
            write_corrections(tmp_path / "a.geojson", tmp_path / "b.geojson", tmp_path / out)
    assert (tmp_path / "mine.geojson").read_text() == "{}"
    with pytest.raises(LabelError, match="no corrected feature"):
        write_corrections(tmp_path / "a.geojson", tmp_path / "a.geojson", tmp_path / "none.geojson")
    assert not (tmp_path / "none.geojson").exists()


def test_corrections_command_line(tmp_path, capsys):
    predicted = [square(0, 0, 8, "tubules", name=PREDICTION_NAME)]
    (tmp_path / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": predicted}))
    (tmp_path / "b.geojson").write_text(json.dumps([*predicted, square(10, 0, 4, "glomeruli")]))
    args = [
        "corrections",
        "--predicted",
        str(tmp_path / "a.geojson"),
        "--corrected",
        str(tmp_path / "b.geojson"),
    ]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(tmp_path / "l.geojson")])
    assert exit_.value.code == 0
    err = capsys.readouterr().err
    assert err.strip() == (
        f"corrections: 1 labels (glomeruli 1) -> {tmp_path / 'l.geojson'}; dropped 1 untouched predictions, "
        "0 unclassified, 0 empty"
    )
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--out", str(tmp_path / "a.geojson")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {tmp_path / 'a.geojson'}: --out is one of the input"
    )


def cli(*args):
    return cli_exit_code(list(args))


def region_dice(labels, truth, region, cls):
    """Dice of class ``cls`` in the corrected region's bounding box (grown by 6 px)."""
    rows, cols = np.nonzero(region)
    window = (slice(max(rows.min() - 6, 0), rows.max() + 7), slice(max(cols.min() - 6, 0), cols.max() + 7))
    pred, true = labels[window] == cls, truth[window] == cls
    return 2 * (pred & true).sum() / max(pred.sum() + true.sum(), 1)


def quantify(ckpt, slide, out):
    from histoseg.inference.checkpoint import load_predictor
    from histoseg.quantify import run_quantify
    from histoseg.report.areas import read_label_level

    assert run_quantify(load_predictor(ckpt), str(slide), out, progress=False) == 0
    return read_label_level(out / f"{slide.stem}.labels.tif", max_pixels=10**8)[0]


@pytest.mark.slow
def test_correction_round_fixes_the_corrected_region(tmp_path, capsys):
    slide, dense, truth = make_labelled_slide(tmp_path, "s", seed=3)
    table = "slide,labels,kind,split,mpp\n{labels}s.tif,s.png,dense,val,0.5\n"
    (tmp_path / "weak.csv").write_text(table.format(labels="s.tif,s.png,dense,train,0.5\n"))
    run = [
        "fit",
        "--config",
        TINY,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_checkpointing",
        "true",
    ]
    # 1. a deliberately weak model: one optimizer step
    assert cli(*run, "--data.init_args.slides", tmp_path / "weak.csv", "--trainer.max_steps", "1",
               "--trainer.default_root_dir", tmp_path / "weak") == 0  # fmt: skip
    weak = next((tmp_path / "weak").rglob("*.ckpt"))
    before = quantify(weak, slide, tmp_path / "pred")
    assert before.shape == truth.shape
    # 2. in QuPath: the user redraws the largest glomerulus and paints an interstitium stroke beside it
    components, count = ndimage.label(truth == 3)
    sizes = ndimage.sum(np.ones_like(truth), components, range(1, count + 1))
    region = components == 1 + int(np.argmax(sizes))
    drawn = label_map_to_features(region.astype(np.uint8) * 3, CLASSES)
    assert len(drawn) == 1
    predicted = json.loads((tmp_path / "pred" / "s.geojson").read_text())["features"]
    rows, cols = np.nonzero(region)
    y = float(rows.min()) - 3.0 if rows.min() >= 24 else float(rows.max()) + 4.0
    stroke = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
        [float(cols.min()), y], [float(cols.max()) + 1, y]]}, "properties": {"classification": {"name": "interstitium"}}}  # fmt: skip
    exported = as_qupath_exports([*predicted, *drawn]) + [stroke]
    (tmp_path / "corrected.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": exported})
    )
    # 3. corrections -> labels: the untouched predictions are dropped
    assert cli("corrections", "--predicted", tmp_path / "pred" / "s.geojson", "--corrected",
               tmp_path / "corrected.geojson", "--out", tmp_path / "labels.geojson") == 0  # fmt: skip
    assert len(json.loads((tmp_path / "labels.geojson").read_text())["features"]) == 2
    # 4. fine-tune from the same checkpoint (model.init_checkpoint), scribble labels = the corrections
    (tmp_path / "fix.csv").write_text(table.format(labels="s.tif,labels.geojson,scribbles,train,0.5\n"))
    assert cli(*run, "--data.init_args.slides", tmp_path / "fix.csv", "--data.init_args.patches.class_balanced", "true",
               "--model.init_args.init_checkpoint", weak, "--model.init_args.lr", "0.01", "--trainer.max_epochs", "6",
               "--data.init_args.patches.patches_per_epoch", "8", "--trainer.limit_train_batches", "4",
               "--trainer.default_root_dir", tmp_path / "fix") == 0  # fmt: skip
    fixed = next((tmp_path / "fix").rglob("*.ckpt"))
    after = quantify(fixed, slide, tmp_path / "after")
    dice_before = region_dice(before, truth, region, 3)
    dice_after = region_dice(after, truth, region, 3)
    with capsys.disabled():
        print(
            f"\ncorrected region ({int(region.sum())} px, glomeruli): Dice before {dice_before:.3f}, after {dice_after:.3f}"
        )
    assert dice_after > max(dice_before + 0.3, 0.7)
