"""``bestiary bench`` (``bestiary_keras.bench``): the results file and its ratios."""

import json

import numpy as np
import pytest

from bestiary_keras import bench


def _row(model, implementation, images_per_s, peak_mib, parameters=100):
    return {"model": model, "implementation": implementation, "parameters": parameters,
            "step_ms": 1000.0 * 16 / images_per_s, "images_per_s": images_per_s,
            "peak_mib": peak_mib, "memory": "peak RSS", "device": "CPU (test, 2 cores)",
            "device_slug": "cpu-2core", "precision": "float32"}


def test_ratios_are_ours_over_the_reference():
    rows = bench.ratios([_row("vgg16", "ours", 30.0, 900.0),
                         _row("vgg16", "reference", 24.0, 1000.0),
                         _row("resnet50", "ours", 10.0, 500.0, parameters=7),
                         _row("resnet50", "reference", 20.0, 400.0)])
    assert rows == [
        {"model": "vgg16", "throughput_ratio": 1.25, "memory_ratio": 0.9, "same_parameters": True},
        {"model": "resnet50", "throughput_ratio": 0.5, "memory_ratio": 1.25,
         "same_parameters": False},
    ]


def test_main_measures_and_writes_markdown_and_json(tmp_path):
    output = tmp_path / "bench-test.md"
    status = bench.main(["--models", "vgg16", "--input-size", "32", "--batch-size", "2",
                         "--steps", "2", "--warmup", "1", "--num-classes", "3", "--in-process",
                         "--note", "Test run.", "--output", str(output)])
    assert status == 0
    text = output.read_text()
    assert ("| model | implementation | parameters | step time (ms, median) | fastest - slowest "
            "step (ms) | images/s | peak memory (MiB, peak RSS) |") in text
    assert "| model | throughput ours / reference (higher is better) |" in text
    data = json.loads(output.with_suffix(".json").read_text())
    assert [(r["model"], r["implementation"]) for r in data["results"]] == [
        ("vgg16", "ours"), ("vgg16", "reference")]
    ours, reference = data["results"]
    # the same network: VGG-16 at 32x32 with 3 classes (flatten of 512 values, two FC of 4096)
    expected = 14_714_688 + (512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 3 + 3)
    assert ours["parameters"] == reference["parameters"] == expected
    for r in data["results"]:
        assert r["images_per_s"] > 0 and r["peak_mib"] > 100
        assert len(r["steps_ms"]) == 2  # the timed steps, warm-up left out
        assert r["step_ms"] == pytest.approx(np.median(r["steps_ms"]), abs=0.01)
        assert r["images_per_s"] == pytest.approx(2 * 1000 / r["step_ms"])
    (ratio,) = data["ratios"]
    assert ratio["throughput_ratio"] == pytest.approx(
        ours["images_per_s"] / reference["images_per_s"])
    assert f"| vgg16 | {ratio['throughput_ratio']:.3f} |" in text
    assert data["settings"]["input_size"] == 32 and "Test run." in text


def test_main_rejects_sizes_the_models_cannot_take(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--input-size", "48", "--output", "unused.md"])
    assert "multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--batch-size", "0"])
    with pytest.raises(ValueError, match="implementation='theirs'"):
        bench.build("vgg16", "theirs", input_size=32, num_classes=2)
