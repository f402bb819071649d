"""Seeded student bugs for Lab 01 (input preprocessing).

Each is a mistake seen in real submissions or one step away from one. The
selfcheck proves that the hidden checks catch every one of them.
"""

import numpy as np

from autograder.mutants import mutant
from solutions.preprocessing import Preprocessor, channel_std, mean_image


@mutant("mean_image rounds the mean back to the input's dtype (uint8)", replaces="mean_image")
def mean_image_rounded(x):
    x = np.asarray(x)
    return x.mean(axis=0).astype(x.dtype)


@mutant("mean_image sums uint8 pixels in uint8, which overflows", replaces="mean_image")
def mean_image_uint8_sum(x):
    x = np.asarray(x)
    return x.sum(axis=0, dtype=x.dtype) / x.shape[0]


@mutant("channel_mean reshapes (N, C, H, W) to (C, -1) without moving the C axis first",
        replaces="channel_mean")
def channel_mean_bad_reshape(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[1], -1).mean(axis=1)


@mutant("channel_std uses the sample standard deviation (ddof=1)", replaces="channel_std")
def channel_std_sample(x):
    return np.asarray(x, dtype=np.float64).std(axis=(0, 2, 3), ddof=1)


@mutant("channel_std averages the per-image standard deviations (wrong axes)",
        replaces="channel_std")
def channel_std_per_image(x):
    return np.asarray(x, dtype=np.float64).std(axis=(2, 3)).mean(axis=0)


@mutant("transform re-fits the statistics on the data it transforms (test set leak)",
        replaces="Preprocessor")
class PreprocessorRefitsOnInput(Preprocessor):
    def transform(self, x):
        if self.mean is not None:
            self.fit(x)
        return super().transform(x)


@mutant("transform subtracts in place, modifying a float64 input", replaces="Preprocessor")
class PreprocessorInPlace(Preprocessor):
    def transform(self, x):
        out = super().transform(x)
        if isinstance(x, np.ndarray) and x.dtype == np.float64:
            x[...] = out  # what `x -= mean` on the caller's array does
            return x
        return out


@mutant('"channel_mean" and "standardize" subtract the mean image instead of channel means',
        replaces="Preprocessor")
class PreprocessorMeanImageEverywhere(Preprocessor):
    def fit(self, x_train):
        super().fit(x_train)
        self.mean_img = mean_image(x_train)
        return self

    def transform(self, x):
        if self.mean is None:
            raise RuntimeError("call fit first")
        out = np.asarray(x) - self.mean_img[None]
        if self.mode == "standardize":
            out = out / self.std[None, :, None, None]
        return out


@mutant('"standardize" divides by the variance instead of the standard deviation',
        replaces="Preprocessor")
class PreprocessorDividesByVariance(Preprocessor):
    def fit(self, x_train):
        super().fit(x_train)
        if self.std is not None:
            self.std = channel_std(x_train) ** 2
        return self


@mutant("transform does not check the number of channels (numpy broadcasts silently)",
        replaces="Preprocessor")
class PreprocessorNoChannelCheck(Preprocessor):
    def transform(self, x):
        if self.mean is None:
            raise RuntimeError("call fit first")
        x = np.asarray(x)
        if self.mode == "mean_image":
            return x - self.mean
        out = x - self.mean[:, None, None]
        if self.mode == "standardize":
            out = out / self.std[:, None, None]
        return out


@mutant("transform before fit returns its input instead of raising", replaces="Preprocessor")
class PreprocessorNoFitCheck(Preprocessor):
    def transform(self, x):
        if self.mean is None:
            return np.array(x, dtype=np.float64)
        return super().transform(x)


@mutant("mean_image keeps a float32 input's dtype (np.mean's default)", replaces="mean_image")
def mean_image_keeps_float32(x):
    return np.asarray(x).mean(axis=0)


@mutant("mean_image squeezes its input: a batch of one or one channel loses an axis",
        replaces="mean_image")
def mean_image_squeezed(x):
    return np.asarray(x, dtype=np.float64).squeeze().mean(axis=0)


@mutant("mean_image reads the pixels as uint8 (negative int16 pixels wrap around)",
        replaces="mean_image")
def mean_image_as_uint8(x):
    return np.asarray(x).astype(np.uint8).mean(axis=0, dtype=np.float64)


@mutant("channel_std keeps a float32 input's dtype", replaces="channel_std")
def channel_std_keeps_float32(x):
    return np.asarray(x).std(axis=(0, 2, 3))


@mutant("fit keeps the statistics of its first call (a second fit changes nothing)",
        replaces="Preprocessor")
class PreprocessorFitsOnce(Preprocessor):
    def fit(self, x_train):
        if self.mean is None:
            super().fit(x_train)
        return self


@mutant("an unknown mode's ValueError does not say which modes exist", replaces="Preprocessor")
class PreprocessorVagueModeError(Preprocessor):
    def __init__(self, mode):
        if mode not in self.MODES:
            raise ValueError("unknown mode")
        super().__init__(mode)


@mutant("a wrong number of channels raises a ValueError without the shapes",
        replaces="Preprocessor")
class PreprocessorVagueShapeError(Preprocessor):
    def transform(self, x):
        try:
            return super().transform(x)
        except ValueError:
            raise ValueError("wrong number of channels") from None


@mutant("fit and transform accept a single (C, H, W) image without its batch axis",
        replaces="Preprocessor")
class PreprocessorAccepts3D(Preprocessor):
    @staticmethod
    def _check_images(name, x):
        x = np.asarray(x)
        return x[None] if x.ndim == 3 else x


@mutant('"mean_image" mode compares only the number of channels (an H or W of 1 broadcasts)',
        replaces="Preprocessor")
class PreprocessorChecksChannelsOnly(Preprocessor):
    def transform(self, x):
        if self.mean is not None and self.mode == "mean_image" and np.ndim(x) == 4:
            if np.shape(x)[1] != self.mean.shape[0]:
                raise ValueError(f"x has shape {np.shape(x)}: expected {self.mean.shape[0]} "
                                 f"channels")
            return np.asarray(x) - self.mean[None]
        return super().transform(x)


@mutant("transform before fit raises a RuntimeError that does not say what to do",
        replaces="Preprocessor")
class PreprocessorSilentFitError(Preprocessor):
    def transform(self, x):
        if self.mean is None:
            raise RuntimeError("not ready")
        return super().transform(x)
