"""Type faces for the readers' rendered signs, chosen in the config (`digits.faces`, `words.faces`).

Real signs are lettered in road-sign faces (DIN 1451 in much of Europe, Transport in the
UK, FHWA Highway Gothic in the Americas), mostly narrow, and none of them ships with
anything installable here. Variety stands in for them: a reader that has seen many faces
reads one more. A face set is

- `base`: the eight faces the readers were first trained on, and the only ones the
  detector's scene renderer and the classifier's rendered speed limits use: five TrueType
  faces matplotlib ships and three of OpenCV's Hershey stroke faces;
- `wide`: those plus condensed and narrow sans faces from Debian font packages
  (`make system-deps` installs them), among them OSP-DIN, an open DIN 1451;
- or a list of font file names (and Hershey face names) spelt out in the config.

Faces are looked up by exact file name, so `make train` always draws with the same ones;
a missing face stops training with the package that provides it. HERSHEY_DUPLEX is never
a training face: tests/test_ocr.py and the `pasted` evaluation set draw with it as the face
no model here has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

MATPLOTLIB = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf", "cmss10.ttf")
HERSHEY = {
    "HERSHEY_SIMPLEX": cv2.FONT_HERSHEY_SIMPLEX,
    "HERSHEY_COMPLEX": cv2.FONT_HERSHEY_COMPLEX,
    "HERSHEY_TRIPLEX": cv2.FONT_HERSHEY_TRIPLEX,
}
NEVER_TRAINED = "HERSHEY_DUPLEX"

# Upright faces close to road-sign lettering, with the Debian package each comes from.
# Kept out on purpose, to measure a reader on faces it never saw: B612 (fonts-b612),
# Open Sans Condensed (fonts-open-sans) and Overpass (a Highway Gothic revival).
DEBIAN = {
    "OSP-DIN.ttf": "fonts-opendin",
    "routed-gothic.ttf": "fonts-routed-gothic",
    "routed-gothic-narrow.ttf": "fonts-routed-gothic",
    "LiberationSansNarrow-Bold.ttf": "fonts-liberation",
    "LiberationSansNarrow-Regular.ttf": "fonts-liberation",
    "LiberationSans-Bold.ttf": "fonts-liberation",
    "DejaVuSansCondensed-Bold.ttf": "fonts-dejavu-extra",
    "DejaVuSansCondensed.ttf": "fonts-dejavu-extra",
    "NimbusSansNarrow-Bold.otf": "fonts-urw-base35",
    "NimbusSansNarrow-Regular.otf": "fonts-urw-base35",
    "URWGothic-Demi.otf": "fonts-urw-base35",
    "RobotoCondensed-Bold.ttf": "fonts-roboto-unhinted",
    "RobotoCondensed-Regular.ttf": "fonts-roboto-unhinted",
    "Roboto-Medium.ttf": "fonts-roboto-unhinted",
    "FreeSansBold.ttf": "fonts-freefont-ttf",
}
SETS = {"base": (*MATPLOTLIB, *HERSHEY), "wide": (*MATPLOTLIB, *HERSHEY, *DEBIAN)}
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts")


@dataclass(frozen=True)
class Faces:
    """Resolved faces: TrueType/OpenType files, then Hershey faces, drawn from with equal odds."""

    truetype: tuple[Path, ...]
    hershey: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.truetype) + len(self.hershey)

    def names(self) -> list[str]:
        by_code = {code: name for name, code in HERSHEY.items()}
        return [p.name for p in self.truetype] + [by_code[h] for h in self.hershey]


def matplotlib_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def base(font_dir: Path) -> Faces:
    """The eight faces of the `base` set, matplotlib's taken from `font_dir`."""
    return Faces(tuple(font_dir / n for n in MATPLOTLIB), tuple(HERSHEY.values()))


def find(name: str, dirs: tuple[Path, ...] = FONT_DIRS) -> Path:
    """The font file called exactly `name`: matplotlib's own, else the first in the system font folders."""
    if name in MATPLOTLIB:
        return matplotlib_dir() / name
    for d in dirs:
        hits = sorted(d.rglob(name)) if d.is_dir() else []
        if hits:
            return hits[0]
    package = DEBIAN.get(name)
    hint = f"install the Debian package {package} (make system-deps)" if package else "install the font that has it"
    raise FileNotFoundError(f"type face {name} not found in {', '.join(map(str, dirs))}: {hint}")


def resolve(spec: str | list[str] | None, dirs: tuple[Path, ...] = FONT_DIRS) -> Faces:
    """A face set by name (`base`, `wide`; None is `base`) or an explicit list of file and Hershey names."""
    if spec is None:
        spec = "base"
    if isinstance(spec, str):
        if spec not in SETS:
            raise ValueError(f"unknown face set {spec!r}; known: {sorted(SETS)}, or a list of font file names")
        names: list[str] = list(SETS[spec])
    else:
        names = [str(n) for n in spec]
    if NEVER_TRAINED in names:
        raise ValueError(f"{NEVER_TRAINED} is kept out of training: the tests and the `pasted` set use it as unseen")
    if not names:
        raise ValueError("a face set needs at least one face")
    truetype = tuple(find(n, dirs) for n in names if n not in HERSHEY and not n.startswith("HERSHEY_"))
    unknown = [n for n in names if n.startswith("HERSHEY_") and n not in HERSHEY]
    if unknown:
        raise ValueError(f"unknown Hershey face(s) {unknown}; known: {sorted(HERSHEY)}")
    return Faces(truetype, tuple(HERSHEY[n] for n in names if n in HERSHEY))
