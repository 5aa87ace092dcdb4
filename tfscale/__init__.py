"""tfscale: large-minibatch ResNet training on CPU clusters with Horovod, LARS and Collapsed Ensembles."""
import os
import re
import sys
import tempfile

# tf_keras (legacy Keras 2) is 20 % (fp32) / 38 % (bf16) faster than Keras 3 on our CPUs, and Horovod's
# Keras integration expects it. TensorFlow reads this once, at its first import, so the package sets it
# before any of its modules can import TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TF_CPP_MIN_LOG_LEVEL=0 from the user asks for every C++ line: quiet_tensorflow_import then filters nothing.
_SHOW_ALL = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
# oneDNN's and the CPU-feature guard's INFO banners on every rank drown the logs of a 512-rank job.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.2.0"

# What the stock TensorFlow wheel prints on a CPU-only machine at start-up, before its log level applies:
# CUDA plugin registration, the failed cuInit, absl's pre-initialisation notice, and (TF 2.21, whose
# start-up INFO lines ignore TF_CPP_MIN_LOG_LEVEL) the oneDNN and CPU-feature banners.
_STARTUP_NOISE = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory|failed call to cuInit|"
                            r"All log messages before absl::InitializeLog|Could not find cuda drivers|"
                            r"TF-TRT Warning|computation placer already registered|oneDNN custom operations are on|"
                            r"cpu_feature_guard|rebuild TensorFlow with the appropriate compiler flags")


def quiet_tensorflow_import():
  """Imports TensorFlow (and finds its devices) with the C++ start-up noise filtered out of stderr; every
  other line still reaches stderr. Only imports when the user set TF_CPP_MIN_LOG_LEVEL=0."""
  if _SHOW_ALL or "tensorflow" in sys.modules:
    import tensorflow as tf
    return tf
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf
      tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode(errors="replace").splitlines(keepends=True):
        if not _STARTUP_NOISE.search(line):
          sys.stderr.write(line)
  return tf
