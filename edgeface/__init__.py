"""edgeface: classify faces on small ARM boxes with an int8 TFLite model and log them to SQLite.

This package is the device runtime. It never imports TensorFlow: models run on LiteRT.
"""

__version__ = "0.1.0"
