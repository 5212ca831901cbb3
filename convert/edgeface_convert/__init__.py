"""edgeface's workstation side: make a model (the embedder or the classic CNN) and convert it to an
int8 `.tflite`.

The work needs TensorFlow (`pip install '.[convert]'` in edgeface's source folder); `options` and `arguments`, which the
runtime's command line uses, do not. It uses the runtime's preprocessing, so the crops it trains
and calibrates on are the crops the device will see.
"""

import os

# TensorFlow's C++ start-up chatter hides the lines people read; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
