"""fer_utils: the thin library behind the fer-report notebooks.

Submodules are imported on demand so that ``import fer_utils`` stays fast and does not
pull in TensorFlow; import ``fer_utils.data``, ``fer_utils.models`` ... directly.
"""

__version__ = "0.1.0"

#: The seven FER2013 classes in the one fixed order used everywhere (alphabetical, as
#: the Kaggle folder layout sorts them). Label ``i`` means ``CLASSES[i]``.
CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: FER2013 usages, in the order reports list them.
USAGES = ("Training", "PublicTest", "PrivateTest")

#: The pipeline's profiles (``configs/<profile>.yaml``).
PROFILES = ("smoke", "demo", "full", "fer2013")

#: Side of the square grayscale FER2013 images.
IMAGE_SIZE = 48


class DataError(ValueError):
    """Bad input data: the message names the file (and CSV row) and the problem."""


class OptionError(ValueError):
    """A command-line option or plan entry that cannot work: the message names it."""
