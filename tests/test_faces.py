"""Type faces of the readers' rendered signs: the base set is what the scene renderer and the
classifier keep, wider sets are looked up by exact file name, and the unseen face stays unseen."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from roadsigns.training import faces, readers


def test_base_set_is_the_eight_original_faces() -> None:
    base = faces.resolve(None)
    assert base == faces.resolve("base") == faces.base(readers._font_dir())
    assert len(base) == 8 and all(p.is_file() for p in base.truetype)
    assert faces.NEVER_TRAINED not in base.names()


def test_default_glyphs_are_the_base_sets() -> None:
    """Callers that pass no faces (scenes, the classifier's speed limits) draw exactly as before."""
    font_dir = readers._font_dir()
    for seed in range(12):
        plain = readers._glyph_mask("80", np.random.default_rng(seed), font_dir)
        explicit = readers._glyph_mask("80", np.random.default_rng(seed), font_dir, faces.resolve("base"))
        assert np.array_equal(np.asarray(plain), np.asarray(explicit))


def test_missing_face_names_its_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fonts-opendin"):
        faces.resolve(["OSP-DIN.ttf"], dirs=(tmp_path,))


def test_face_list_by_exact_file_name(tmp_path: Path) -> None:
    font = readers._font_dir() / "DejaVuSans-Bold.ttf"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Copied-Face.ttf").write_bytes(font.read_bytes())
    chosen = faces.resolve(["Copied-Face.ttf", "HERSHEY_SIMPLEX"], dirs=(tmp_path,))
    assert chosen.names() == ["Copied-Face.ttf", "HERSHEY_SIMPLEX"]
    images, targets = readers.synthetic(readers.NUMBERS, 6, 0, chosen)
    assert images.shape == (6, 32, 32, 3) and targets.shape == (6, 3)


def test_unseen_face_and_unknown_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="HERSHEY_DUPLEX"):
        faces.resolve(["DejaVuSans.ttf", "HERSHEY_DUPLEX"])
    with pytest.raises(ValueError, match="unknown face set"):
        faces.resolve("narrow")


def test_wide_set_extends_base_in_order() -> None:
    """`make system-deps` installs the wide set's packages; the config's readers train on it."""
    try:
        wide = faces.resolve("wide")
    except FileNotFoundError as exc:
        if os.environ.get("CI"):  # CI runs make setup, which installs them
            raise
        pytest.skip(f"wide faces not installed: {exc}")
    base = faces.resolve("base")
    assert wide.truetype[: len(base.truetype)] == base.truetype and wide.hershey == base.hershey
    assert "OSP-DIN.ttf" in wide.names() and faces.NEVER_TRAINED not in wide.names()
    images, _ = readers.synthetic(readers.WORDS, 40, 1, wide)
    assert images.shape == (40, 32, 32, 3)


def test_training_refuses_a_missing_face_before_any_stage(capsys: pytest.CaptureFixture[str]) -> None:
    from roadsigns.training.pipeline import main

    code = main(["--stages", "digits", "--set", "digits.faces=[DejaVuSans.ttf, NoSuchFace-Bold.ttf]"])
    assert code == 2 and "NoSuchFace-Bold.ttf not found" in capsys.readouterr().err
