"""Seeded student bugs for Lab 06 (data augmentation).

Each is a mistake seen in real code or one step away from one (several are what
torchvision's v2 transforms do when applied to a whole batch). The selfcheck
proves that the hidden checks catch every one of them.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from autograder.mutants import mutant
from solutions.augmentation import color_jitter, cutmix, mixup, random_crop


@mutant("random_horizontal_flip draws one random number for the whole batch (as a v2 transform "
        "applied to a batched tensor does)", replaces="random_horizontal_flip")
def flip_one_draw_per_batch(x, p=0.5, generator=None):
    u = torch.rand(1, generator=generator)
    return x.flip(-1) if bool(u[0] < p) else x.clone()


@mutant("random_horizontal_flip flips upside down (the height axis) instead of left-right",
        replaces="random_horizontal_flip")
def flip_vertical(x, p=0.5, generator=None):
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-2), x)


@mutant("random_horizontal_flip flips with probability 1 - p", replaces="random_horizontal_flip")
def flip_one_minus_p(x, p=0.5, generator=None):
    flip = (torch.rand(x.shape[0], generator=generator) >= p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@mutant("random_crop's offsets never reach the last position (randint's high taken as "
        "inclusive)", replaces="random_crop")
def crop_misses_last_offset(x, size, padding=0, generator=None, padding_mode="constant"):
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    modes = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}
    if padding_mode not in modes:
        raise ValueError(padding_mode)
    n, _, height, width = x.shape
    hp, wp = height + 2 * padding, width + 2 * padding
    if h > hp or w > wp:
        raise ValueError("too large")
    padded = F.pad(x, (padding,) * 4, mode=modes[padding_mode]) if padding else x
    top = torch.randint(0, max(hp - h, 1), (n,), generator=generator)
    left = torch.randint(0, max(wp - w, 1), (n,), generator=generator)
    return torch.stack([padded[i, :, top[i]:top[i] + h, left[i]:left[i] + w] for i in range(n)])


@mutant("random_crop pads on one side only (top and left, by 2 * padding)", replaces="random_crop")
def crop_pads_one_side(x, size, padding=0, generator=None, padding_mode="constant"):
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    modes = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}
    if padding_mode not in modes:
        raise ValueError(padding_mode)
    n, _, height, width = x.shape
    hp, wp = height + 2 * padding, width + 2 * padding
    if h > hp or w > wp:
        raise ValueError("too large")
    padded = F.pad(x, (2 * padding, 0, 2 * padding, 0), mode=modes[padding_mode]) if padding else x
    top = torch.randint(0, hp - h + 1, (n,), generator=generator)
    left = torch.randint(0, wp - w + 1, (n,), generator=generator)
    return torch.stack([padded[i, :, top[i]:top[i] + h, left[i]:left[i] + w] for i in range(n)])


@mutant("random_crop cuts every image of the batch at the same offset", replaces="random_crop")
def crop_one_offset_per_batch(x, size, padding=0, generator=None, padding_mode="constant"):
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    modes = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}
    if padding_mode not in modes:
        raise ValueError(padding_mode)
    _, _, height, width = x.shape
    hp, wp = height + 2 * padding, width + 2 * padding
    if h > hp or w > wp:
        raise ValueError("too large")
    padded = F.pad(x, (padding,) * 4, mode=modes[padding_mode]) if padding else x
    top = int(torch.randint(0, hp - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, wp - w + 1, (1,), generator=generator))
    return padded[:, :, top:top + h, left:left + w].clone()


@mutant("color_jitter applies brightness additively (x + b - 1) instead of multiplying",
        replaces="color_jitter")
def jitter_additive_brightness(x, brightness=0.0, contrast=0.0, saturation=0.0, generator=None):
    n = x.shape[0]
    factors = []
    for amount in (brightness, contrast, saturation):
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        u = torch.rand(n, generator=generator)
        factors.append((lo + (hi - lo) * u).to(x)[:, None, None, None])
    b, c, s = factors

    def grey(img):
        return 0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]

    out = (x + (b - 1)).clamp(0, 1)
    mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (c * out + (1 - c) * mean).clamp(0, 1)
    return (s * out + (1 - s) * grey(out)).clamp(0, 1)


@mutant("color_jitter's saturation (and contrast) blend with an unweighted grey (mean of R, G, B)",
        replaces="color_jitter")
def jitter_unweighted_grey(x, brightness=0.0, contrast=0.0, saturation=0.0, generator=None):
    n = x.shape[0]
    factors = []
    for amount in (brightness, contrast, saturation):
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        u = torch.rand(n, generator=generator)
        factors.append((lo + (hi - lo) * u).to(x)[:, None, None, None])
    b, c, s = factors
    out = (b * x).clamp(0, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (c * out + (1 - c) * mean).clamp(0, 1)
    return (s * out + (1 - s) * out.mean(dim=1, keepdim=True)).clamp(0, 1)


@mutant("color_jitter draws one factor per property for the whole batch", replaces="color_jitter")
def jitter_one_draw_per_batch(x, brightness=0.0, contrast=0.0, saturation=0.0, generator=None):
    factors = []
    for amount in (brightness, contrast, saturation):
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        factors.append(float(lo + (hi - lo) * torch.rand(1, generator=generator)))
    b, c, s = factors

    def grey(img):
        return 0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]

    out = (b * x).clamp(0, 1)
    mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (c * out + (1 - c) * mean).clamp(0, 1)
    return (s * out + (1 - s) * grey(out)).clamp(0, 1)


@mutant("color_jitter scales and clamps the caller's images in place (x.mul_(b).clamp_(0, 1))",
        replaces="color_jitter")
def jitter_in_place(x, brightness=0.0, contrast=0.0, saturation=0.0, generator=None):
    n = x.shape[0]
    factors = []
    for amount in (brightness, contrast, saturation):
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        u = torch.rand(n, generator=generator)
        factors.append((lo + (hi - lo) * u).to(x)[:, None, None, None])
    b, c, s = factors

    def grey(img):
        return 0.2989 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]

    out = x.mul_(b).clamp_(0, 1)
    mean = grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (c * out + (1 - c) * mean).clamp(0, 1)
    return (s * out + (1 - s) * grey(out)).clamp(0, 1)


@mutant("random_erasing erases in place: the caller's images are modified",
        replaces="random_erasing")
def erasing_in_place(x, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, generator=None):
    n, _, height, width = x.shape
    u1, u2, u3, u4 = (torch.rand(n, generator=generator) for _ in range(4))
    area = scale[0] + (scale[1] - scale[0]) * u1
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * u2)
    h = torch.round(torch.sqrt(area * height * width * r)).long().clamp(1, height)
    w = torch.round(torch.sqrt(area * height * width / r)).long().clamp(1, width)
    top = torch.floor(u3 * (height - h + 1)).long()
    left = torch.floor(u4 * (width - w + 1)).long()
    for i in range(n):
        x[i, :, top[i]:top[i] + h[i], left[i]:left[i] + w[i]] = value
    return x


@mutant("random_erasing swaps h and w (aspect ratio read as w / h) and never erases the last "
        "row", replaces="random_erasing")
def erasing_swapped_sides(x, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, generator=None):
    n, _, height, width = x.shape
    u1, u2, u3, u4 = (torch.rand(n, generator=generator) for _ in range(4))
    area = scale[0] + (scale[1] - scale[0]) * u1
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * u2)
    w = torch.round(torch.sqrt(area * height * width * r)).long().clamp(1, width)
    h = torch.round(torch.sqrt(area * height * width / r)).long().clamp(1, height)
    top = torch.floor(u3 * (height - h)).long().clamp(min=0)
    left = torch.floor(u4 * (width - w + 1)).long()
    out = x.clone()
    for i in range(n):
        out[i, :, top[i]:top[i] + h[i], left[i]:left[i] + w[i]] = value
    return out


@mutant("mixup mixes the images but returns the one-hot labels unmixed", replaces="mixup")
def mixup_labels_unmixed(x, y, alpha=0.2, num_classes=10, generator=None):
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n)).float()
    lam_x = lam[:, None, None, None]
    return lam_x * x + (1 - lam_x) * x[perm], F.one_hot(y, num_classes).float(), lam


@mutant("mixup draws one Beta weight for the whole batch but reports it per image",
        replaces="mixup")
def mixup_one_lambda(x, y, alpha=0.2, num_classes=10, generator=None):
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    lam = torch.full((n,), float(np.random.default_rng(seed).beta(alpha, alpha)))
    one_hot = F.one_hot(y, num_classes).float()
    y_soft = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm]
    lam_x = lam[:, None, None, None]
    return lam_x * x + (1 - lam_x) * x[perm], y_soft, lam


@mutant("cutmix weights the labels by the drawn lambda instead of the clipped box's real area",
        replaces="cutmix")
def cutmix_labels_by_lambda(x, y, alpha=1.0, num_classes=10, generator=None):
    n, _, height, width = x.shape
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n))
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    out = x.clone()
    for i in range(n):
        r = 0.5 * math.sqrt(1 - float(lam[i]))
        hh, hw = int(r * height), int(r * width)
        y1, y2 = max(int(cy[i]) - hh, 0), min(int(cy[i]) + hh, height)
        x1, x2 = max(int(cx[i]) - hw, 0), min(int(cx[i]) + hw, width)
        out[i, :, y1:y2, x1:x2] = x[perm[i], :, y1:y2, x1:x2]
    lam = lam.float()
    one_hot = F.one_hot(y, num_classes).float()
    return out, lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm], lam


@mutant("soft_cross_entropy takes the log of the softmax (inf and nan on large logits)",
        replaces="soft_cross_entropy")
def soft_ce_unstable(logits, soft_targets):
    probs = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    return -(soft_targets * torch.log(probs)).sum(dim=1).mean()


@mutant("tta_predict averages the logits, then takes the softmax", replaces="tta_predict")
def tta_averages_logits(model, x, transforms=("identity", "hflip")):
    flips = {"identity": lambda t: t, "hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2)}
    views = list(transforms)
    if not views or any(v not in flips for v in views):
        raise ValueError(transforms)
    model.eval()
    with torch.no_grad():
        logits = torch.stack([model(flips[v](x)) for v in views]).mean(dim=0)
    return torch.softmax(logits, dim=1)


@mutant("tta_predict leaves the model in train mode (no model.eval())", replaces="tta_predict")
def tta_train_mode(model, x, transforms=("identity", "hflip")):
    flips = {"identity": lambda t: t, "hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2)}
    views = list(transforms)
    if not views or any(v not in flips for v in views):
        raise ValueError(transforms)
    with torch.no_grad():
        return torch.stack([torch.softmax(model(flips[v](x)), dim=1) for v in views]).mean(dim=0)


@mutant("tta_predict runs the model with gradients on (no torch.no_grad())",
        replaces="tta_predict")
def tta_with_grad(model, x, transforms=("identity", "hflip")):
    flips = {"identity": lambda t: t, "hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2)}
    views = list(transforms)
    if not views or any(v not in flips for v in views):
        raise ValueError(transforms)
    model.eval()
    return torch.stack([torch.softmax(model(flips[v](x)), dim=1) for v in views]).mean(dim=0)


# --- promises of the docstrings beyond the main path: defaults, bounds, the seed's draw -----


@mutant("color_jitter's brightness defaults to 0.5 instead of 0 (a call with no amounts is not "
        "the identity)", replaces="color_jitter")
def jitter_default_brightness(x, brightness=0.5, contrast=0.0, saturation=0.0, generator=None,
                              _reference=color_jitter):
    return _reference(x, brightness, contrast, saturation, generator)


@mutant("mixup's alpha defaults to 1.0 (CutMix's) instead of 0.2", replaces="mixup")
def mixup_default_alpha(x, y, alpha=1.0, num_classes=10, generator=None, _reference=mixup):
    return _reference(x, y, alpha, num_classes, generator)


@mutant("cutmix's num_classes defaults to the labels' maximum + 1 instead of 10",
        replaces="cutmix")
def cutmix_default_classes(x, y, alpha=1.0, num_classes=None, generator=None, _reference=cutmix):
    return _reference(x, y, alpha, int(y.max()) + 1 if num_classes is None else num_classes,
                      generator)


@mutant("mixup draws numpy's seed as torch.randint(0, 2**63) instead of the documented "
        "torch.randint(0, 2**32)", replaces="mixup")
def mixup_other_seed_range(x, y, alpha=0.2, num_classes=10, generator=None):
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n)).float()
    one_hot = F.one_hot(y, num_classes).float()
    y_soft = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[perm]
    lam_x = lam.to(x.dtype)[:, None, None, None]
    return lam_x * x + (1 - lam_x) * x[perm], y_soft, lam


@mutant("random_crop rejects a crop as large as the padded image (h >= Hp instead of h > Hp)",
        replaces="random_crop")
def crop_rejects_full_size(x, size, padding=0, generator=None, padding_mode="constant",
                           _reference=random_crop):
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h >= x.shape[2] + 2 * padding or w >= x.shape[3] + 2 * padding:
        raise ValueError(f"a crop of {h}x{w} does not fit")
    return _reference(x, size, padding, generator, padding_mode)


@mutant("random_crop accepts a crop of 0 rows (it returns an empty tensor instead of raising)",
        replaces="random_crop")
def crop_accepts_empty(x, size, padding=0, generator=None, padding_mode="constant",
                       _reference=random_crop):
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h == 0 or w == 0:
        return x[:, :, :h, :w].clone()
    return _reference(x, size, padding, generator, padding_mode)


@mutant("random_erasing lets a tiny rectangle round to 0 pixels (no clamp to at least 1)",
        replaces="random_erasing")
def erasing_no_least_pixel(x, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, generator=None):
    n, _, height, width = x.shape
    u1, u2, u3, u4 = (torch.rand(n, generator=generator) for _ in range(4))
    area = scale[0] + (scale[1] - scale[0]) * u1
    r = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u2)
    h = torch.round(torch.sqrt(area * height * width * r)).long().clamp(max=height)
    w = torch.round(torch.sqrt(area * height * width / r)).long().clamp(max=width)
    top = torch.floor(u3 * (height - h + 1)).long()
    left = torch.floor(u4 * (width - w + 1)).long()
    out = x.clone()
    for i in range(n):
        out[i, :, top[i]:top[i] + h[i], left[i]:left[i] + w[i]] = value
    return out
