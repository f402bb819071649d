"""Reference solution of Lab 06: data augmentation (augmentation de données).

Every name here is defined by an answer cell of labs/06_augmentation.ipynb, with the
same signature and docstring.

Conventions of the lab:

- Images are batches ``(N, C, H, W)`` of float32 tensors, values in [0, 1] for the
  colour transforms.
- Every random transform draws ONE set of random parameters PER IMAGE (torchvision's v2
  transforms, applied to a batched tensor, draw one set for the whole batch).
- Randomness comes from ``generator``: a ``torch.Generator`` (a CPU one, e.g.
  ``torch.Generator().manual_seed(0)``), or None for torch's global generator (so that
  ``torch.manual_seed(s)`` fixes the result). The draws are made on the CPU, in the
  order each docstring gives, then moved to the images' device; the same generator state
  therefore always gives the same output.
- No function modifies its inputs: each returns new tensors, of the input's dtype and
  device. A float batch that requires grad goes through (torch refuses in-place writes
  into it, which is how the checks see an input modified in place): compute out of
  place, with torch operations.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_horizontal_flip(x, p=0.5, generator=None):
    """Flip each image of a batch left-right, independently, with probability p.

    Inputs:
    - x: tensor of shape (N, C, H, W), any dtype, any device.
    - p: float in [0, 1], the probability that an image is flipped (0: never,
      1: always).
    - generator: torch.Generator or None (torch's global generator).

    The draw: ``u = torch.rand(N, generator=generator)`` (on the CPU); image n is
    flipped where ``u[n] < p``.

    Returns:
    - out: new tensor of the shape, dtype and device of x; ``out[n]`` is
      ``x[n].flip(-1)`` (the width axis reversed) for the flipped images and a copy of
      ``x[n]`` for the others. x is not modified.
    """
    n = x.shape[0]
    flip = (torch.rand(n, generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_crop(x, size, padding=0, generator=None, padding_mode="constant"):
    """Pad a batch of images, then cut one random crop per image (vectorized).

    Inputs:
    - x: tensor of shape (N, C, H, W), float dtype, any device.
    - size: int or (h, w): the size of the crops (an int s means (s, s)).
    - padding: int >= 0, pixels added on EACH of the four sides before cropping.
    - generator: torch.Generator or None (torch's global generator).
    - padding_mode: how the padding is filled, with torchvision's names:
      "constant" (zeros), "edge" (the border pixel repeated) or "reflect" (mirrored
      without repeating the border pixel). Any other value raises ValueError.

    The draws, with Hp = H + 2 * padding and Wp = W + 2 * padding:
    ``top = torch.randint(0, Hp - h + 1, (N,), generator=generator)``, then
    ``left = torch.randint(0, Wp - w + 1, (N,), generator=generator)``; every offset
    from 0 to the last possible one is equally likely. Crop n is the window
    ``padded[n, :, top[n]:top[n] + h, left[n]:left[n] + w]``.

    Returns:
    - out: new tensor of shape (N, C, h, w), dtype and device of x. Raises ValueError
      when (h, w) is larger than the padded image. No Python loop over the batch.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    modes = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}
    if padding_mode not in modes:
        raise ValueError(f"padding_mode must be one of {', '.join(modes)}, got {padding_mode!r}")
    n, _, height, width = x.shape
    hp, wp = height + 2 * padding, width + 2 * padding
    if h > hp or w > wp or h < 1 or w < 1:
        raise ValueError(f"a crop of {h}x{w} does not fit in padded images of {hp}x{wp}")
    padded = F.pad(x, (padding,) * 4, mode=modes[padding_mode]) if padding else x
    top = torch.randint(0, hp - h + 1, (n,), generator=generator).to(x.device)
    left = torch.randint(0, wp - w + 1, (n,), generator=generator).to(x.device)
    rows = top[:, None] + torch.arange(h, device=x.device)  # (N, h)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (N, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing on axes 0, 2, 3 puts the channel axis last: (N, h, w, C).
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


def color_jitter(x, brightness=0.0, contrast=0.0, saturation=0.0, generator=None):
    """Random brightness, contrast and saturation, one factor per image and property.

    Inputs:
    - x: float tensor of shape (N, 3, H, W), RGB values in [0, 1], any device.
    - brightness, contrast, saturation: floats >= 0. The factor of each property is
      uniform in [max(0, 1 - amount), 1 + amount] (0: the factor is 1, unchanged).
    - generator: torch.Generator or None (torch's global generator).

    The draws: ``u = torch.rand(N, generator=generator)`` three times, for the
    brightness, then the contrast, then the saturation factors (always all three, even
    for an amount of 0); the factor is ``lo + (hi - lo) * u``. They are applied in that
    order, each as torchvision defines it (a blend, then a clamp to [0, 1]):
    - brightness b: ``out = clamp(b * x)``
      (``torchvision.transforms.v2.functional.adjust_brightness``);
    - contrast c: ``out = clamp(c * x + (1 - c) * m)``, m the mean over the image of
      its grey version (``adjust_contrast``);
    - saturation s: ``out = clamp(s * x + (1 - s) * g)``, g the grey version of each
      pixel (``adjust_saturation``).
    The grey version of a pixel is its luma ``0.2989 R + 0.587 G + 0.114 B``.

    Returns:
    - out: new tensor of the shape, dtype and device of x. x is not modified.
    """
    n = x.shape[0]
    factors = []
    for amount in (brightness, contrast, saturation):
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        u = torch.rand(n, generator=generator)
        factors.append((lo + (hi - lo) * u).to(x)[:, None, None, None])
    b, c, s = factors

    def grey(img):  # (N, 3, H, W) -> (N, 1, H, W), torchvision's luma weights
        return 0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]

    out = (b * x).clamp(0, 1)
    mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (c * out + (1 - c) * mean).clamp(0, 1)
    return (s * out + (1 - s) * grey(out)).clamp(0, 1)


def random_erasing(x, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, generator=None):
    """Erase one random rectangle per image (cutout; Zhong et al., 2020, DeVries and
    Taylor, 2017).

    Inputs:
    - x: float tensor of shape (N, C, H, W), any device.
    - scale: (min, max), the range of the rectangle's area as a fraction of H * W.
    - ratio: (min, max), the range of its aspect ratio h / w (drawn log-uniformly).
    - value: float, what the erased pixels are set to.
    - generator: torch.Generator or None (torch's global generator).

    The draws: four times ``torch.rand(N, generator=generator)``, giving u1, u2, u3,
    u4, in that order:
    - area fraction ``a = scale[0] + (scale[1] - scale[0]) * u1``;
    - aspect ratio ``r = exp(log(ratio[0]) + (log(ratio[1]) - log(ratio[0])) * u2)``;
    - ``h = round(sqrt(a * H * W * r))`` and ``w = round(sqrt(a * H * W / r))``
      (``torch.round``), then clamped to 1..H and 1..W;
    - ``top = floor(u3 * (H - h + 1))``, ``left = floor(u4 * (W - w + 1))``.
    The rectangle of image n covers the rows top..top + h - 1 and the columns
    left..left + w - 1 of every channel
    (``torchvision.transforms.v2.functional.erase(x[n], top, left, h, w, value)``).

    Returns:
    - out: new tensor of the shape, dtype and device of x. x is not modified.
    """
    n, _, height, width = x.shape
    u1, u2, u3, u4 = (torch.rand(n, generator=generator) for _ in range(4))
    area = scale[0] + (scale[1] - scale[0]) * u1
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * u2)
    h = torch.round(torch.sqrt(area * height * width * r)).long().clamp(1, height)
    w = torch.round(torch.sqrt(area * height * width / r)).long().clamp(1, width)
    top = torch.floor(u3 * (height - h + 1)).long()
    left = torch.floor(u4 * (width - w + 1)).long()
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (N, W)
    box = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.device)  # (N, 1, H, W)
    return torch.where(box, torch.as_tensor(value, dtype=x.dtype, device=x.device), x)


def mixup(x, y, alpha=0.2, num_classes=10, generator=None):
    """Mixup (Zhang, Cisse, Dauphin and Lopez-Paz, ICLR 2018): blend each image with
    another image of the batch, and their labels in the same proportions.

    Inputs:
    - x: float tensor of shape (N, C, H, W), any device.
    - y: int64 tensor of shape (N,), labels in 0..num_classes - 1.
    - alpha: float > 0, the parameter of the Beta(alpha, alpha) distribution of the
      mixing weights (small alpha: most weights near 0 or 1).
    - num_classes: int, the number of classes K.
    - generator: torch.Generator or None (torch's global generator).

    The draws, in this order:
    - the partners: ``perm = torch.randperm(N, generator=generator)``; image n is
      mixed with image ``perm[n]`` (possibly itself);
    - the weights, ONE PER IMAGE (torchvision's MixUp draws one per batch):
      ``seed = int(torch.randint(0, 2**32, (1,), generator=generator))``, then
      ``lam = np.random.default_rng(seed).beta(alpha, alpha, size=N)`` (torch has
      no Beta sampler that takes a generator).

    Returns a tuple:
    - x_mixed: new tensor of the shape, dtype and device of x:
      ``x_mixed[n] = lam[n] * x[n] + (1 - lam[n]) * x[perm[n]]``.
    - y_soft: float32 tensor of shape (N, K) on x's device, the soft labels
      ``lam[n] * one_hot(y[n]) + (1 - lam[n]) * one_hot(y[perm[n]])``; each row sums
      to 1.
    - lam: float32 tensor of shape (N,) on x's device, the weight of image n itself.
    x and y are not modified.
    """
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))
    lam = lam.to(device=x.device, dtype=torch.float32)
    perm = perm.to(x.device)
    one_hot = F.one_hot(y.to(x.device), num_classes).to(torch.float32)
    y_soft = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm]
    lam_x = lam.to(x.dtype)[:, None, None, None]
    x_mixed = lam_x * x + (1 - lam_x) * x[perm]
    return x_mixed, y_soft, lam


def cutmix(x, y, alpha=1.0, num_classes=10, generator=None):
    """CutMix (Yun, Han, Oh, Chun, Choe and Yoo, ICCV 2019): paste a rectangle of
    another image of the batch into each image; the labels are mixed in proportion to
    the pixel areas.

    Inputs:
    - x: float tensor of shape (N, C, H, W), any device.
    - y: int64 tensor of shape (N,), labels in 0..num_classes - 1.
    - alpha: float > 0, the parameter of Beta(alpha, alpha) (alpha = 1: uniform).
    - num_classes: int, the number of classes K.
    - generator: torch.Generator or None (torch's global generator).

    The draws, in this order:
    - the partners: ``perm = torch.randperm(N, generator=generator)``;
    - the target weights, one per image, as in mixup:
      ``seed = int(torch.randint(0, 2**32, (1,), generator=generator))``, then
      ``lam = np.random.default_rng(seed).beta(alpha, alpha, size=N)`` (float64);
    - the box centres: ``cy = torch.randint(0, H, (N,), generator=generator)``, then
      ``cx = torch.randint(0, W, (N,), generator=generator)``.
    The box of image n, as torchvision's CutMix computes it: with
    ``r = 0.5 * sqrt(1 - lam[n])`` (float64), ``half_h = floor(r * H)``,
    ``half_w = floor(r * W)``, its rows are ``max(cy - half_h, 0) <= i < min(cy + half_h, H)``
    and its columns ``max(cx - half_w, 0) <= j < min(cx + half_w, W)``: a box that
    crosses the border is CLIPPED, so it can be smaller than the area 1 - lam asks for.

    Returns a tuple:
    - x_mixed: new tensor of the shape, dtype and device of x: ``x[perm[n]]`` inside
      the box of image n, ``x[n]`` outside.
    - y_soft: float32 tensor of shape (N, K) on x's device,
      ``lam_box[n] * one_hot(y[n]) + (1 - lam_box[n]) * one_hot(y[perm[n]])`` where
      ``lam_box[n] = 1 - (box area after clipping) / (H * W)`` is the fraction of
      image n's own pixels that remain; each row sums to 1.
    - lam_box: float32 tensor of shape (N,) on x's device.
    x and y are not modified.
    """
    n, _, height, width = x.shape
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    r = 0.5 * torch.sqrt(1 - lam)
    half_h = torch.floor(r * height).long()
    half_w = torch.floor(r * width).long()
    y1, y2 = (cy - half_h).clamp(min=0), (cy + half_h).clamp(max=height)
    x1, x2 = (cx - half_w).clamp(min=0), (cx + half_w).clamp(max=width)
    rows = torch.arange(height)[None, :]
    cols = torch.arange(width)[None, :]
    in_rows = (rows >= y1[:, None]) & (rows < y2[:, None])
    in_cols = (cols >= x1[:, None]) & (cols < x2[:, None])
    box = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.device)  # (N, 1, H, W)
    lam_box = (1 - (y2 - y1) * (x2 - x1) / (height * width)).to(x.device, torch.float32)
    perm = perm.to(x.device)
    one_hot = F.one_hot(y.to(x.device), num_classes).to(torch.float32)
    y_soft = lam_box[:, None] * one_hot + (1 - lam_box[:, None]) * one_hot[perm]
    x_mixed = torch.where(box, x[perm], x)
    return x_mixed, y_soft, lam_box


def soft_cross_entropy(logits, soft_targets):
    """Cross-entropy against soft labels (probability vectors), averaged over the batch.

    Inputs:
    - logits: float tensor of shape (N, K), the raw scores.
    - soft_targets: float tensor of shape (N, K); each row is a probability vector
      (non-negative, sums to 1), e.g. the y_soft of mixup or cutmix.

    Returns:
    - loss: scalar tensor ``mean_n( -sum_k soft_targets[n, k] * log_softmax(logits)[n, k] )``,
      differentiable with respect to logits; numerically stable (logits of 1000 give a
      finite loss). With one-hot targets it equals
      ``torch.nn.functional.cross_entropy(logits, labels)``.
    """
    return -(soft_targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def tta_predict(model, x, transforms=("identity", "hflip")):
    """Test-time augmentation: average the model's class probabilities over views.

    Inputs:
    - model: torch.nn.Module mapping (N, C, H, W) float32 images to (N, K) logits.
    - x: float32 tensor of shape (N, C, H, W), on the model's device.
    - transforms: non-empty list or tuple of view names, each one of
      "identity" (x itself), "hflip" (``x.flip(-1)``, left-right) and
      "vflip" (``x.flip(-2)``, upside down). A name may appear twice (it then
      counts twice). An empty list or an unknown name raises ValueError.

    The model is put in eval mode (``model.eval()``: batch norm uses its running
    statistics, dropout is off) and LEFT in eval mode; every forward pass runs under
    ``torch.no_grad()``, one pass per view on the whole batch.

    Returns:
    - probs: float32 tensor of shape (N, K), the mean over the views of
      ``softmax(model(view), dim=1)``: average the PROBABILITIES, not the logits. Each
      row sums to 1. x is not modified.
    """
    flips = {"identity": lambda t: t, "hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2)}
    views = list(transforms)
    if not views or any(v not in flips for v in views):
        raise ValueError(f"transforms must be a non-empty list of {', '.join(flips)}; "
                         f"got {transforms!r}")
    model.eval()
    with torch.no_grad():
        probs = [torch.softmax(model(flips[v](x)), dim=1) for v in views]
    return torch.stack(probs).mean(dim=0)
