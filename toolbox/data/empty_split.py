"""What an empty split's message suggests: `split` re-divides the images found in train and val, so
it helps only when one of them has images; when none was found, the message says where to look,
in the terms of the source's format."""
from __future__ import annotations

from .source import Split

RESPLIT = ("add some, or run `python -m toolbox split NAME --train-percent 80 --val-percent 20` to make it from "
           "the other's images")
# what to look at when no split has any image (`split` cannot help then: it re-divides images found)
NO_IMAGES_HINT = {
    "yolo": "no image was found for any split: check that data.yaml's train/val paths name this dataset's image "
            "folders (e.g. train/images and valid/images, or images/train and images/val)",
    "voc": "no image was found for any split: check that ImageSets/Main/train.txt and val.txt (or "
           "train_anno_list.txt and val_anno_list.txt) list the images and that the XML files are in Annotations/",
    "labelme": "no image was found: check that the folder holds LabelMe JSON files (with 'shapes') beside their images",
    "roboflow": "no image was found for any split: check that train/ and valid/ each hold _annotations.coco.json "
                "listing their images",
}
NO_IMAGES_DEFAULT = ("no image was found for any split: check that annotations/instance_train.json and "
                     "instance_val.json list their images, or name the format with --format if it was misdetected")


def empty_hint(splits: dict[str, Split], fmt: str | None) -> str:
    """`split` helps only when train or val has images to share; otherwise say where to look."""
    def has_images(name: str) -> bool:
        sp = splits.get(name)
        return sp is not None and isinstance(sp.coco, dict) and bool(sp.coco.get("images"))

    if has_images("train") or has_images("val"):
        return RESPLIT
    return NO_IMAGES_HINT.get(fmt or "", NO_IMAGES_DEFAULT)
