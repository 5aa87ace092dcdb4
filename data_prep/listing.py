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


def read_devkit_order(path):
  """The wnids in ILSVRC2012_ID order (ID 1 first): from the devkit's meta.mat (its leaf synsets), or from a
  text file with one wnid per line. The 1,000 ILSVRC classes sorted by wnid are refused: the devkit's ids
  are not in that order (ID 1 is n02119789), so a sorted list (e.g. Caffe's synsets.txt) mislabels ~all."""
  if path.endswith(".mat"):
    from scipy.io import loadmat  # scikit-learn's dependency; only this layout needs it
    rows = loadmat(path, squeeze_me=True)["synsets"]
    order = [str(r["WNID"]) for r in sorted((r for r in rows if int(r["num_children"]) == 0),
                                             key=lambda r: int(r["ILSVRC2012_ID"]))]
  else:
    with open(path) as f:
      order = [line.split()[0] for line in f if line.strip()]
  if len(order) == 1000 and order == sorted(order):
    raise ValueError(f"{path} lists the classes in sorted order, not the devkit's ILSVRC2012_ID order: "
                     "give the devkit's data/meta.mat as --val_synsets")
  return order
