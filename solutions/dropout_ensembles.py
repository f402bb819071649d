"""Reference solution of Lab 03: dropout and model ensembles.

Every name here is defined by an answer cell of labs/03_dropout_ensembles.ipynb,
with the same signature and docstring.

Convention (the lecture's): ``keep_prob`` is the probability of KEEPING a unit.
torch's ``nn.Dropout(p)`` takes the probability of DROPPING it:
``Dropout(keep_prob)`` here behaves like ``torch.nn.Dropout(p=1 - keep_prob)``.
"""

import numpy as np
import torch


def dropout_forward(x, dropout_param):
    """Forward pass of inverted dropout (numpy).

    Inputs:
    - x: float array of any shape.
    - dropout_param: dict with the keys
      - "keep_prob": float in (0, 1], the probability of KEEPING each unit (the
        lecture's p; torch's p is the probability of dropping, 1 - keep_prob);
      - "mode": "train" or "test";
      - "seed" (optional): int or None. The random numbers come from
        ``rng = np.random.default_rng(dropout_param.get("seed"))``, drawn as
        ``u = rng.random(x.shape)``; unit i is kept where ``u[i] < keep_prob``.
        With a seed the mask is always the same; without one it is new at each call.

    Returns a tuple:
    - out: array of the shape of x. In "train" mode out = x * mask, where
      mask = (u < keep_prob) / keep_prob: kept units are scaled by 1 / keep_prob,
      so that E[out] = x. In "test" mode out = x (nothing dropped, no scaling).
    - cache: what dropout_backward needs: (dropout_param, mask); mask is None in
      "test" mode.
    """
    keep_prob, mode = dropout_param["keep_prob"], dropout_param["mode"]
    if mode == "train":
        rng = np.random.default_rng(dropout_param.get("seed"))
        mask = (rng.random(x.shape) < keep_prob) / keep_prob
        out = x * mask
    elif mode == "test":
        mask = None
        out = x
    else:
        raise ValueError(f'dropout mode must be "train" or "test", got {mode!r}')
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    """Backward pass of inverted dropout (numpy).

    Inputs:
    - dout: upstream gradient, array of the shape of out.
    - cache: (dropout_param, mask) from dropout_forward. The SAME mask as in the
      forward pass must be used: never draw a new one here.

    Returns:
    - dx: gradient with respect to x, array of the shape of dout.
    """
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * mask
    return dout


class Dropout(torch.nn.Module):
    """Inverted dropout as a torch module, written with tensor operations.

    ATTENTION: keep_prob is the probability of KEEPING a unit (the lecture's p).
    torch.nn.Dropout(p) takes the probability of DROPPING it: Dropout(keep_prob)
    behaves like torch.nn.Dropout(p=1 - keep_prob).

    - In training mode (``self.training`` is True, after ``.train()``), each call
      draws a new mask with torch's random generator (so ``torch.manual_seed``
      makes it reproducible): each element is kept with probability keep_prob and
      scaled by 1 / keep_prob, or set to 0.
    - In eval mode (after ``.eval()``) it returns its input unchanged.
    Do not call torch.nn.functional.dropout or torch.nn.Dropout: write it with
    torch.rand_like, a comparison and a product.
    """

    def __init__(self, keep_prob=0.5):
        """Inputs:
        - keep_prob: float in (0, 1], probability of keeping each unit. Anything
          else raises ValueError.
        """
        super().__init__()
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(
                f"keep_prob is the probability of KEEPING a unit and must be in (0, 1]; "
                f"got {keep_prob}"
            )
        self.keep_prob = float(keep_prob)

    def forward(self, x):
        """Inputs:
        - x: float tensor of any shape.

        Returns:
        - tensor of the shape of x: x * mask / keep_prob in training mode, x in eval mode.
        """
        if not self.training or self.keep_prob == 1.0:
            return x
        mask = (torch.rand_like(x) < self.keep_prob).to(x.dtype)
        return x * mask / self.keep_prob


def dropconnect_forward(x, w, b, dropconnect_param):
    """Forward pass of a fully connected layer with DropConnect (numpy).

    DropConnect (Wan, Zeiler, Zhang, LeCun and Fergus, ICML 2013) drops WEIGHTS
    instead of activations. Here one mask on w is drawn per call (per mini-batch)
    and used for every example of the batch, with the inverted scaling of dropout.
    The bias is never dropped.

    Inputs:
    - x: array of shape (N, D).
    - w: array of shape (D, M).
    - b: array of shape (M,).
    - dropconnect_param: dict with "keep_prob" (probability of KEEPING each
      weight), "mode" ("train" or "test") and an optional "seed". As in
      dropout_forward: ``u = np.random.default_rng(dropconnect_param.get("seed")).random(w.shape)``,
      and weight (d, m) is kept where ``u[d, m] < keep_prob``.

    Returns a tuple:
    - out: array of shape (N, M). "train": out = x @ (w * mask) + b with
      mask = (u < keep_prob) / keep_prob. "test": out = x @ w + b.
    - cache: what dropconnect_backward needs: (x, w, b, dropconnect_param, mask);
      mask is None in "test" mode.
    """
    keep_prob, mode = dropconnect_param["keep_prob"], dropconnect_param["mode"]
    if mode == "train":
        rng = np.random.default_rng(dropconnect_param.get("seed"))
        mask = (rng.random(w.shape) < keep_prob) / keep_prob
        out = x @ (w * mask) + b
    elif mode == "test":
        mask = None
        out = x @ w + b
    else:
        raise ValueError(f'dropconnect mode must be "train" or "test", got {mode!r}')
    return out, (x, w, b, dropconnect_param, mask)


def dropconnect_backward(dout, cache):
    """Backward pass of a fully connected layer with DropConnect (numpy).

    Inputs:
    - dout: upstream gradient, array of shape (N, M).
    - cache: (x, w, b, dropconnect_param, mask) from dropconnect_forward (use its
      mask: never draw a new one).

    Returns a tuple:
    - dx: array of shape (N, D).
    - dw: array of shape (D, M); zero where the weight was dropped.
    - db: array of shape (M,).
    """
    x, w, b, dropconnect_param, mask = cache
    w_used = w if mask is None else w * mask
    dx = dout @ w_used.T
    dw = x.T @ dout
    if mask is not None:
        dw = dw * mask
    db = dout.sum(axis=0)
    return dx, dw, db


def majority_vote(predictions):
    """Majority vote of M models (numpy).

    Inputs:
    - predictions: integer array of shape (M, N): predictions[m, n] is the label
      (0, 1, 2, ...) that model m predicts for example n.

    Returns:
    - votes: int64 array of shape (N,): for each example, the label predicted by
      the most models. TIES GO TO THE SMALLEST LABEL: with votes 3, 1, 3, 1 the
      answer is 1.
    """
    predictions = np.asarray(predictions, dtype=np.int64)
    n_labels = int(predictions.max()) + 1
    # counts[n, k] = number of models that predict label k for example n.
    counts = np.zeros((predictions.shape[1], n_labels), dtype=np.int64)
    for row in predictions:
        counts[np.arange(predictions.shape[1]), row] += 1
    return counts.argmax(axis=1)  # argmax returns the first (smallest) label of a tie


def average_probabilities(logits):
    """Average of the class probabilities of M models (numpy).

    Inputs:
    - logits: float array of shape (M, N, K): the raw scores (logits) of M
      models for N examples and K classes.

    Returns:
    - probs: float64 array of shape (N, K): the softmax of each model's logits
      (over the K classes), then the mean over the M models. Each row sums to 1.
      The softmax must be numerically stable (subtract each row's maximum first):
      logits of 1000 must not give nan or inf.
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=2, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=2, keepdims=True)
    return probs.mean(axis=0)


def ensemble_predict(models, x, method="average", batch_size=500):
    """Predicted labels of an ensemble of torch models.

    Each model is put in eval mode (``model.eval()``: dropout off, batch norm uses
    its running statistics) and run under ``torch.no_grad()``, batch by batch, on
    the device of its parameters. The models are left in eval mode.

    Inputs:
    - models: list of M torch.nn.Module, each mapping a float32 batch of x to
      (B, K) logits.
    - x: float32 tensor or numpy array of shape (N, ...), e.g. (N, C, H, W).
    - method: "vote" (majority_vote of each model's argmax, ties to the smallest
      label) or "average" (argmax of average_probabilities of the logits). Any
      other value raises ValueError.
    - batch_size: int, number of examples per forward pass.

    Returns:
    - labels: int64 numpy array of shape (N,).
    """
    if method not in ("vote", "average"):
        raise ValueError(f'method must be "vote" or "average", got {method!r}')
    x = torch.as_tensor(x, dtype=torch.float32)
    all_logits = []
    for model in models:
        model.eval()
        device = next(model.parameters(), torch.empty(0)).device
        with torch.no_grad():
            batches = [model(x[i : i + batch_size].to(device)).cpu()
                       for i in range(0, x.shape[0], batch_size)]
        all_logits.append(torch.cat(batches).numpy())
    logits = np.stack(all_logits)  # (M, N, K)
    if method == "vote":
        return majority_vote(logits.argmax(axis=2))
    return average_probabilities(logits).argmax(axis=1)
