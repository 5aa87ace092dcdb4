"""ImageNet-sized synthetic JPEGs for benchmarks: 500×375, ≈110 KB (smooth colour fields plus sensor-like
noise, which is what puts real photos near that size at quality 90). Nothing here is for training."""
import io
import os

import numpy as np
from PIL import Image


def imagenet_like_jpeg(rng: np.random.Generator, width: int = 500, height: int = 375) -> bytes:
  base = rng.integers(0, 255, (48, 64, 3), np.uint8)
  image = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), np.float32)
  image = np.clip(image + rng.normal(0, 17, image.shape), 0, 255).astype(np.uint8)
  out = io.BytesIO()
  Image.fromarray(image).save(out, format="JPEG", quality=90)
  return out.getvalue()


def make_tree(root: str, classes: int, per_class: int, seed: int = 0) -> list:
  """train/<wnid>/<wnid>_<n>.JPEG; returns the file paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for c in range(classes):
    wnid = f"n{c + 1:08d}"
    os.makedirs(os.path.join(root, "train", wnid), exist_ok=True)
    for i in range(per_class):
      path = os.path.join(root, "train", wnid, f"{wnid}_{i}.JPEG")
      if not os.path.exists(path):
        with open(path, "wb") as f:
          f.write(imagenet_like_jpeg(rng))
      paths.append(path)
  return paths
