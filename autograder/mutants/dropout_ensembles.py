"""Seeded student bugs for Lab 03 (dropout and model ensembles).

Each is a mistake seen in real submissions or one step away from one. The
selfcheck proves that the hidden checks catch every one of them.
"""

import numpy as np
import torch

from autograder.mutants import mutant
from solutions.dropout_ensembles import (
    Dropout,
    average_probabilities,
    ensemble_predict,
    majority_vote,
)


@mutant("dropout scales kept units by keep_prob instead of 1 / keep_prob",
        replaces="dropout_forward")
def dropout_forward_scale_by_p(x, dropout_param):
    p = dropout_param["keep_prob"]
    if dropout_param["mode"] == "train":
        rng = np.random.default_rng(dropout_param.get("seed"))
        mask = (rng.random(x.shape) < p) * p
        return x * mask, (dropout_param, mask)
    return x, (dropout_param, None)


@mutant("dropout keeps a unit with probability 1 - keep_prob (torch's p read as keep_prob)",
        replaces="dropout_forward")
def dropout_forward_keeps_one_minus_p(x, dropout_param):
    p = dropout_param["keep_prob"]
    if dropout_param["mode"] == "train":
        rng = np.random.default_rng(dropout_param.get("seed"))
        mask = (rng.random(x.shape) >= p) / (1 - p)
        return x * mask, (dropout_param, mask)
    return x, (dropout_param, None)


@mutant("dropout also drops units in test mode", replaces="dropout_forward")
def dropout_forward_in_test_mode(x, dropout_param):
    p = dropout_param["keep_prob"]
    rng = np.random.default_rng(dropout_param.get("seed"))
    mask = (rng.random(x.shape) < p) / p
    return x * mask, (dropout_param, mask)


@mutant("dropout drops units but never rescales them (the lecture's plain dropout)",
        replaces="dropout_forward")
def dropout_forward_no_scaling(x, dropout_param):
    p = dropout_param["keep_prob"]
    if dropout_param["mode"] == "train":
        rng = np.random.default_rng(dropout_param.get("seed"))
        mask = (rng.random(x.shape) < p).astype(x.dtype)
        return x * mask, (dropout_param, mask)
    return x, (dropout_param, None)


@mutant("dropout draws its mask with the global np.random.rand even when a seed is given",
        replaces="dropout_forward")
def dropout_forward_ignores_seed(x, dropout_param):
    p = dropout_param["keep_prob"]
    if dropout_param["mode"] == "train":
        mask = (np.random.rand(*x.shape) < p) / p
        return x * mask, (dropout_param, mask)
    return x, (dropout_param, None)


@mutant("dropout_backward draws a fresh mask instead of reusing the forward pass's",
        replaces="dropout_backward")
def dropout_backward_fresh_mask(dout, cache):
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        p = dropout_param["keep_prob"]
        rng = np.random.default_rng(dropout_param.get("seed"))
        return dout * (rng.random(dout.shape) < p) / p
    return dout


@mutant("dropout_backward forgets the 1 / keep_prob scaling", replaces="dropout_backward")
def dropout_backward_unscaled(dout, cache):
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * (mask != 0)
    return dout


@mutant("Dropout passes keep_prob to torch's dropout as its p (drops with probability keep_prob)",
        replaces="Dropout")
class DropoutTorchP(Dropout):
    def forward(self, x):
        return torch.nn.functional.dropout(x, p=self.keep_prob, training=self.training)


@mutant("Dropout still drops units in eval mode", replaces="Dropout")
class DropoutAlwaysOn(Dropout):
    def forward(self, x):
        mask = (torch.rand_like(x) < self.keep_prob).to(x.dtype)
        return x * mask / self.keep_prob


@mutant("Dropout draws one mask per feature, shared by the whole batch", replaces="Dropout")
class DropoutSharedMask(Dropout):
    def forward(self, x):
        if not self.training:
            return x
        mask = (torch.rand_like(x[:1]) < self.keep_prob).to(x.dtype)
        return x * mask / self.keep_prob


@mutant("dropconnect_backward does not mask the weight gradient", replaces="dropconnect_backward")
def dropconnect_backward_unmasked_dw(dout, cache):
    x, w, b, dropconnect_param, mask = cache
    w_used = w if mask is None else w * mask
    return dout @ w_used.T, x.T @ dout, dout.sum(axis=0)


@mutant("dropconnect_forward drops activations (dropout on x) instead of weights",
        replaces="dropconnect_forward")
def dropconnect_forward_drops_inputs(x, w, b, dropconnect_param):
    p = dropconnect_param["keep_prob"]
    if dropconnect_param["mode"] == "train":
        rng = np.random.default_rng(dropconnect_param.get("seed"))
        mask = (rng.random(w.shape) < p) / p
        xmask = (rng.random(x.shape) < p) / p
        return (x * xmask) @ w + b, (x, w, b, dropconnect_param, mask)
    return x @ w + b, (x, w, b, dropconnect_param, None)


@mutant("majority_vote breaks ties towards the largest label", replaces="majority_vote")
def majority_vote_largest(predictions):
    predictions = np.asarray(predictions, dtype=np.int64)
    n_labels = int(predictions.max()) + 1
    counts = np.zeros((predictions.shape[1], n_labels), dtype=np.int64)
    for row in predictions:
        counts[np.arange(predictions.shape[1]), row] += 1
    return n_labels - 1 - counts[:, ::-1].argmax(axis=1)


@mutant("majority_vote takes the median of the labels instead of the most frequent one",
        replaces="majority_vote")
def majority_vote_median(predictions):
    return np.median(np.asarray(predictions), axis=0).astype(np.int64)


@mutant("average_probabilities averages the logits, then applies the softmax",
        replaces="average_probabilities")
def average_probabilities_of_mean_logits(logits):
    mean = np.asarray(logits, dtype=np.float64).mean(axis=0)
    exp = np.exp(mean - mean.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@mutant("average_probabilities takes the softmax without subtracting the maximum (overflows)",
        replaces="average_probabilities")
def average_probabilities_unstable(logits):
    exp = np.exp(np.asarray(logits, dtype=np.float64))
    return (exp / exp.sum(axis=2, keepdims=True)).mean(axis=0)


@mutant("average_probabilities takes the softmax over the models axis",
        replaces="average_probabilities")
def average_probabilities_wrong_axis(logits):
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (exp / exp.sum(axis=0, keepdims=True)).mean(axis=0)


@mutant("ensemble_predict leaves the models in train mode (dropout on, batch statistics)",
        replaces="ensemble_predict")
def ensemble_predict_train_mode(models, x, method="average", batch_size=500):
    if method not in ("vote", "average"):
        raise ValueError(method)
    x = torch.as_tensor(x, dtype=torch.float32)
    logits = []
    with torch.no_grad():
        for model in models:
            logits.append(torch.cat([model(x[i : i + batch_size])
                                     for i in range(0, x.shape[0], batch_size)]).numpy())
    logits = np.stack(logits)
    if method == "vote":
        return majority_vote(logits.argmax(axis=2))
    return average_probabilities(logits).argmax(axis=1)


@mutant("ensemble_predict runs the models without torch.no_grad()", replaces="ensemble_predict")
def ensemble_predict_with_grad(models, x, method="average", batch_size=500):
    if method not in ("vote", "average"):
        raise ValueError(method)
    x = torch.as_tensor(x, dtype=torch.float32)
    logits = []
    for model in models:
        model.eval()
        logits.append(torch.cat([model(x[i : i + batch_size])
                                 for i in range(0, x.shape[0], batch_size)]).detach().numpy())
    logits = np.stack(logits)
    if method == "vote":
        return majority_vote(logits.argmax(axis=2))
    return average_probabilities(logits).argmax(axis=1)


@mutant('ensemble_predict swaps the methods ("vote" averages, "average" votes)',
        replaces="ensemble_predict")
def ensemble_predict_swapped(models, x, method="average", batch_size=500):
    if method not in ("vote", "average"):
        raise ValueError(method)
    x = torch.as_tensor(x, dtype=torch.float32)
    logits = []
    with torch.no_grad():
        for model in models:
            model.eval()
            logits.append(model(x).numpy())
    logits = np.stack(logits)
    if method == "average":
        return majority_vote(logits.argmax(axis=2))
    return average_probabilities(logits).argmax(axis=1)


@mutant("ensemble_predict returns the first model's predictions only", replaces="ensemble_predict")
def ensemble_predict_first_model(models, x, method="average", batch_size=500):
    if method not in ("vote", "average"):
        raise ValueError(method)
    model = models[0]
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float32)).argmax(dim=1).numpy()


@mutant("Dropout's default keep_prob is 0.8 instead of the documented 0.5", replaces="Dropout")
class DropoutDefault08(Dropout):
    def __init__(self, keep_prob=0.8):
        super().__init__(keep_prob)


@mutant("average_probabilities keeps float32 logits in float32", replaces="average_probabilities")
def average_probabilities_keeps_float32(logits):
    logits = np.asarray(logits)
    exp = np.exp(logits - logits.max(axis=2, keepdims=True))
    return (exp / exp.sum(axis=2, keepdims=True)).mean(axis=0)


@mutant("average_probabilities subtracts one maximum for all rows (far rows underflow)",
        replaces="average_probabilities")
def average_probabilities_global_max(logits):
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max())
    return (exp / exp.sum(axis=2, keepdims=True)).mean(axis=0)


@mutant('ensemble_predict\'s default method is "vote"', replaces="ensemble_predict")
def ensemble_predict_default_vote(models, x, method="vote", batch_size=500,
                                  _reference=ensemble_predict):
    # The reference bound as a default: the mutant notebook rebinds the name to this mutant.
    return _reference(models, x, method, batch_size)
