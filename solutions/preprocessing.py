"""Reference solution of Lab 01: input preprocessing.

Every name here is defined by an answer cell of labs/01_preprocessing.ipynb,
with the same signature and docstring.
"""

import numpy as np


def mean_image(x):
    """Mean image of a set of images (AlexNet's preprocessing).

    Inputs:
    - x: array of shape (N, C, H, W), any numeric dtype (uint8 images included).

    Returns:
    - mean: float64 array of shape (C, H, W); mean[c, i, j] is the average of
      x[:, c, i, j] over the N images.
    """
    return np.asarray(x).mean(axis=0, dtype=np.float64)


def channel_mean(x):
    """Mean of each channel over all images and pixels (VGGNet's preprocessing).

    Inputs:
    - x: array of shape (N, C, H, W), any numeric dtype.

    Returns:
    - mean: float64 array of shape (C,); mean[c] averages x[:, c, :, :].
    """
    return np.asarray(x).mean(axis=(0, 2, 3), dtype=np.float64)


def channel_std(x):
    """Population standard deviation of each channel over all images and pixels.

    Inputs:
    - x: array of shape (N, C, H, W), any numeric dtype.

    Returns:
    - std: float64 array of shape (C,); std[c] is the standard deviation of
      x[:, c, :, :] with denominator N * H * W (numpy's default, ddof=0).
    """
    return np.asarray(x).astype(np.float64).std(axis=(0, 2, 3))


class Preprocessor:
    """Input preprocessing whose statistics come from the training set only.

    Modes:
    - "mean_image":   out = x - mean_image(x_train)            (AlexNet)
    - "channel_mean": out = x - channel_mean(x_train)[c]        (VGGNet)
    - "standardize":  out = (x - channel_mean(x_train)[c]) / channel_std(x_train)[c]

    Usage: ``pre = Preprocessor("standardize").fit(x_train)``, then
    ``pre.transform(x_train)``, ``pre.transform(x_test)``.

    Errors:
    - an unknown mode raises ValueError (naming the valid modes);
    - transform before fit raises RuntimeError (saying to call fit first);
    - transform on x whose number of channels differs from the training set's
      (or, in "mean_image" mode, whose H, W differ) raises ValueError that
      gives both shapes;
    - fit or transform on an array that is not 4-D raises ValueError.
    """

    MODES = ("mean_image", "channel_mean", "standardize")

    def __init__(self, mode):
        """Inputs:
        - mode: one of "mean_image", "channel_mean", "standardize".
        """
        if mode not in self.MODES:
            raise ValueError(f"Unknown mode {mode!r}; use one of {self.MODES}.")
        self.mode = mode
        self.mean = None  # (C, H, W) in "mean_image" mode, else (C,)
        self.std = None  # (C,) in "standardize" mode, else None

    def fit(self, x_train):
        """Compute the statistics of the training set.

        Inputs:
        - x_train: array of shape (N, C, H, W).

        Returns:
        - self, so that ``Preprocessor(mode).fit(x)`` can be chained.
        """
        x_train = self._check_images("x_train", x_train)
        if self.mode == "mean_image":
            self.mean = mean_image(x_train)
        else:
            self.mean = channel_mean(x_train)
        if self.mode == "standardize":
            self.std = channel_std(x_train)
        return self

    def transform(self, x):
        """Apply the preprocessing fitted on the training set.

        Inputs:
        - x: array of shape (N, C, H, W); it is never modified.

        Returns:
        - out: new float64 array of shape (N, C, H, W).
        """
        if self.mean is None:
            raise RuntimeError("This Preprocessor is not fitted yet: call fit(x_train) first.")
        x = self._check_images("x", x)
        expected = self.mean.shape if self.mode == "mean_image" else self.mean.shape[:1]
        if x.shape[1 : 1 + len(expected)] != expected:
            raise ValueError(
                f"x has shape {x.shape}, but the preprocessor was fitted on images of "
                f"shape (C, H, W) starting with {expected}: transform images like the "
                f"training set's."
            )
        if self.mode == "mean_image":
            return x - self.mean[None]
        out = x - self.mean[None, :, None, None]
        if self.mode == "standardize":
            out = out / self.std[None, :, None, None]
        return out

    @staticmethod
    def _check_images(name, x):
        """Return x as an array after checking that it is 4-D (N, C, H, W)."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"{name} must have shape (N, C, H, W); got shape {x.shape}.")
        return x
