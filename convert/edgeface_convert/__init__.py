"""edgeface's workstation side: train the classic CNN and convert it to an int8 `.tflite`.

Needs TensorFlow (`pip install 'edgeface[convert]'`). It uses the runtime's preprocessing, so the
crops it trains and calibrates on are the crops the device will see.
"""

import os

# TensorFlow's C++ start-up chatter hides the lines people read; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
