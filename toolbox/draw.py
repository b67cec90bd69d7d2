"""Drawing boxes and class names on images (check samples, eval pictures, predict output).

Class names may be Chinese, so a CJK-capable font is looked up (Debian's fonts-wqy-microhei or
Noto CJK), then DejaVu, then Pillow's built-in font as the last fallback.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Iterable, Sequence

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@lru_cache(maxsize=8)
def font(size: int = 14) -> ImageFont.ImageFont:
    for path in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default()


def color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class (golden-ratio hue steps)."""
    h = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: Image.Image, boxes: Iterable[Sequence[float]], class_ids: Iterable[int],
               names: Sequence[str], scores: Iterable[float] | None = None) -> Image.Image:
    """Return a copy of `image` with xyxy `boxes` drawn, labelled `name` or `name 0.87`."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    size = max(12, min(out.size) // 40)
    f = font(size)
    width = max(2, min(out.size) // 300)
    scores = list(scores) if scores is not None else None
    for i, (box, cid) in enumerate(zip(boxes, class_ids)):
        x1, y1, x2, y2 = [float(v) for v in box]
        c = color(int(cid))
        draw.rectangle([x1, y1, x2, y2], outline=c, width=width)
        name = names[int(cid)] if 0 <= int(cid) < len(names) else str(cid)
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=f)
        th = ty2 - ty1
        ty = y1 - th - 4 if y1 - th - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 6, ty + th + 4], fill=c)
        draw.text((x1 + 3, ty + 1), text, fill=(0, 0, 0), font=f)
    return out
