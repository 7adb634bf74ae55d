"""scripts/quality_table.py: the README's new / old / bicubic table and the issue-13 bar check."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("quality_table", os.path.join(ROOT, "scripts", "quality_table.py"))
qt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qt)


def result(gains, base=30.0):
    """An eval JSON with per-image gains {scale: {name: gain}} over a bicubic of base - scale."""
    return {"scales": [{"scale": s, "per_image": [{"name": n, "psnr": base - s + g, "bicubic_psnr": base - s}
                                                  for n, g in images.items()]} for s, images in gains.items()]}


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_table_and_passing_bar(tmp_path, capsys):
    new = write(tmp_path, "new.json", result({2: {"a": 1.5, "b": 1.3}, 2.5: {"a": 0.2, "b": 0.4},
                                              3: {"a": 1.1, "b": 1.0}, 4: {"a": 1.0, "b": 1.2}, 6: {"a": 0.1, "b": 0.3}}))
    old = write(tmp_path, "old.json", result({s: {"a": 0.5, "b": -0.2} for s in (2, 2.5, 3, 4, 6)}))
    md, png = tmp_path / "t.md", tmp_path / "g.png"
    assert qt.main([new, old, "--md", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert text.splitlines()[2].startswith("| a | 29.50 / 28.50 / 28.00 (+1.50) | 27.70 / 28.00 / 27.50 (+0.20) |")
    assert "**29.40** / 28.15 / 28.00 (**+1.40**; old +0.15)" in text
    assert "FAIL" not in text and text.count("PASS") == 10
    assert png.stat().st_size > 1000


def test_bar_failures_are_named(tmp_path):
    new = write(tmp_path, "new.json", result({2: {"a": 1.5, "b": -0.1}, 3: {"a": 0.9, "b": 0.9}}))
    old = write(tmp_path, "old.json", result({2: {"a": 0, "b": 0}, 3: {"a": 0, "b": 0}}))
    assert qt.main([new, old, "--md", str(tmp_path / "t.md")]) == 1
    text = (tmp_path / "t.md").read_text()
    assert "FAIL x2: beats bicubic on every image: smallest gain -0.10 dB (b)" in text
    assert "FAIL x2: mean gain >= +1.2 dB: mean gain +0.70 dB" in text
    assert "FAIL x3: mean gain >= +1.0 dB: mean gain +0.90 dB" in text


def test_mismatched_results_are_one_line(tmp_path, capsys):
    new = write(tmp_path, "new.json", result({2: {"a": 1}}))
    old = write(tmp_path, "old.json", result({2: {"b": 1}}))
    assert qt.main([new, old]) == 2
    assert capsys.readouterr().err.strip() == "quality_table: the two results do not cover the same images and scales"
