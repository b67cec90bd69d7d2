"""The data step: import a dataset (folder or archive, any supported format) into the workspace as
PaddleX's COCO layout, check it thoroughly, and re-split it. See toolbox.data.api for the entry points."""
