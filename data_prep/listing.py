"""Helpers shared by the converters for reading raw dataset layouts (no flags, no TensorFlow)."""
import os

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def list_images(directory: str):
  """Image file names in a directory, sorted."""
  return sorted(f for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS))


def read_synset_words(path):
  """{wnid: words} from `n01440764 tench, Tinca tinca` lines (LOC_synset_mapping.txt, synset_words.txt,
  words.txt; the separator may be a space or a tab)."""
  words = {}
  if path:
    with open(path) as f:
      for line in f:
        wnid, _, text = line.strip().replace("\t", " ").partition(" ")
        if wnid:
          words[wnid] = text.strip()
  return words


def find_file(root: str, given, *names):
  """`given` if set, else the first of `names` that exists under root, else None."""
  if given:
    return given
  for name in names:
    if os.path.exists(os.path.join(root, name)):
      return os.path.join(root, name)
  return None
