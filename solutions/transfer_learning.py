"""Reference solution of Lab 05: transfer learning (transfert d'apprentissage).

Every name here is defined by an answer cell of labs/05_transfer_learning.ipynb, with the
same signature and docstring.

Conventions (torchvision's ResNets and labkit.zoo's ShapesResNet share them): a model's
top-level children, in the order of ``model.named_children()``, are its *blocks*
(``conv1``, ``bn1``, ``relu``, ``layer1`` ... ``layer3`` or ``layer4``, ``avgpool``,
``fc``); the last one, ``model.fc``, a ``torch.nn.Linear``, is the *head* (the final
classifier) and everything before it is the *backbone*.
"""

import types

import numpy as np
import torch


def count_parameters(model, trainable_only=False):
    """Count the parameters (the scalar weights) of a model.

    Inputs:
    - model: a torch.nn.Module.
    - trainable_only: bool. False: every parameter; True: only those with
      ``requires_grad=True`` (the ones an optimizer would update).

    Returns:
    - int: the total number of scalars, ``sum(p.numel())`` over the selected parameters
      of ``model.parameters()`` (a parameter shared by two layers counts once).
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def replace_head(model, num_classes):
    """Give a pretrained model a new, freshly initialized final classifier.

    The head is ``model.fc``, a ``torch.nn.Linear``. It is replaced by a NEW
    ``torch.nn.Linear(model.fc.in_features, num_classes)`` (with bias), initialized as
    torch initializes every new Linear (its default, random initialization: nothing of the
    old head is kept). Every other module and parameter of the model stays as it was
    (same objects, same values, same requires_grad flags).

    Inputs:
    - model: a torch.nn.Module with a ``fc`` attribute that is a torch.nn.Linear.
    - num_classes: int >= 1, the number of classes of the new task.

    Returns:
    - model: the same model object, modified in place (returned for convenience). Its new
      head is trainable (``requires_grad=True``) and on the device and dtype of the old one.
    """
    old = model.fc
    model.fc = torch.nn.Linear(old.in_features, int(num_classes)).to(
        device=old.weight.device, dtype=old.weight.dtype
    )
    return model


def freeze(model, train_from=None):
    """Freeze the first blocks of a model: feature extraction or partial fine-tuning.

    The blocks are the model's top-level children in order (``model.named_children()``;
    for a ResNet: conv1, bn1, relu, layer1, ..., avgpool, fc). Every parameter of the
    blocks BEFORE ``train_from`` gets ``requires_grad=False``; every parameter of
    ``train_from`` and of the blocks after it (the head ``fc`` included) gets
    ``requires_grad=True``.

    Frozen batch-norm layers (every ``torch.nn.modules.batchnorm._BatchNorm``, e.g.
    BatchNorm2d, inside a frozen block) are put in eval mode and STAY in eval mode when
    ``model.train()`` is called later (a training loop such as ``labkit.train.fit`` calls
    it at every epoch): they normalize with their running statistics, which never move
    while the rest trains. A way to do it: give each of them its own ``train`` method,
    ``bn.train = types.MethodType(keep_eval, bn)`` with a ``keep_eval(self, mode=True)``
    that calls ``torch.nn.Module.train(self, False)`` (``types.MethodType`` binds it to
    the layer, so that ``copy.deepcopy(model)`` still works). Batch-norm layers in the
    trainable blocks follow ``model.train()`` / ``model.eval()`` as usual, and the mode of
    every other module is left as it is.

    Calling freeze again starts over: ``freeze(model, "layer3")`` after ``freeze(model)``
    unfreezes layer3 (its parameters trainable, its batch-norm layers following
    ``model.train()`` again, and switched to the mode of ``model``).

    Inputs:
    - model: a torch.nn.Module whose top-level children are its blocks, the last one the
      head ``fc``.
    - train_from: str or None, the name of the first block to train (e.g. "layer3"), or
      None: only the head trains (``train_from="fc"``), the whole backbone is frozen.

    Returns:
    - model: the same model object, modified in place.

    Raises:
    - ValueError if train_from is not the name of a top-level child of model.
    """

    def keep_eval(self, mode=True):  # a frozen batch-norm layer's train(): always eval mode
        return torch.nn.Module.train(self, False)

    names = [name for name, _ in model.named_children()]
    if train_from is None:
        train_from = names[-1]
    if train_from not in names:
        raise ValueError(
            f"train_from={train_from!r} is not a block of the model; its blocks are {names}"
        )
    first = names.index(train_from)
    for i, (_, block) in enumerate(model.named_children()):
        frozen = i < first
        for p in block.parameters():
            p.requires_grad_(not frozen)
        for m in block.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if frozen:
                    m.train = types.MethodType(keep_eval, m)
                    m.train()
                elif "train" in m.__dict__:
                    del m.train
                    m.train(model.training)
    return model


def extract_features(model, x, batch_size=256):
    """The backbone's features of a batch of images: what the head ``model.fc`` receives.

    The model runs in eval mode (``model.eval()``: batch norm uses its running statistics,
    dropout is off) and under ``torch.no_grad()`` (no graph is built), in batches of at most
    ``batch_size`` images, so the features of an image do not depend on the batch size.
    The features are the input of ``model.fc`` (for a ResNet, the globally average-pooled
    output of the last stage). A forward hook on ``model.fc`` (``register_forward_hook``,
    removed afterwards) or a temporary ``torch.nn.Identity()`` in its place are two ways to
    get them; either way ``model.fc`` is the same module, with the same weights, afterwards.

    Inputs:
    - model: a torch.nn.Module with a head ``model.fc``.
    - x: float images (N, C, H, W), a numpy array or a torch tensor, already preprocessed;
      it is not modified.
    - batch_size: int >= 1.

    Returns:
    - features: np.ndarray of float32, shape (N, D), D = the number of inputs of the head
      (``model.fc.in_features``). The model is left in eval mode.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    captured = []
    hook = model.fc.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    try:
        model.eval()
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        hook.remove()
    if not captured:
        return np.zeros((0, model.fc.in_features), dtype=np.float32)
    return torch.cat(captured).reshape(len(x), -1).float().numpy()


def parameter_groups(model, backbone_lr, head_lr):
    """Optimizer parameter groups for discriminative learning rates (fine-tuning).

    The pretrained backbone learns with a smaller learning rate than the new head: the
    head's parameters are those of ``model.fc``, the backbone's all the others. Only
    trainable parameters (``requires_grad=True``) are put in a group: frozen ones are in
    none, and every trainable parameter is in exactly one group.

    Inputs:
    - model: a torch.nn.Module with a head ``model.fc``.
    - backbone_lr, head_lr: floats, the learning rates of the two groups.

    Returns:
    - groups: a list of dicts, the backbone's group first then the head's, each
      ``{"names": [...], "params": [...], "lr": float}``: "names" are the parameters'
      names as ``model.named_parameters()`` gives them (e.g. "layer3.0.conv1.weight",
      "fc.bias"), in that order, and "params" the parameters themselves, in the same
      order. A group with no trainable parameter is left out (a fully frozen backbone
      gives only the head's group). ``torch.optim.SGD(groups, lr=...)`` accepts it as it
      is: an optimizer keeps extra keys like "names" in its ``param_groups``.
    """
    backbone = {"names": [], "params": [], "lr": float(backbone_lr)}
    head = {"names": [], "params": [], "lr": float(head_lr)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            group = head if name.startswith("fc.") else backbone
            group["names"].append(name)
            group["params"].append(p)
    return [g for g in (backbone, head) if g["params"]]


def train_linear_classifier(features, labels, num_classes, epochs=100, lr=0.01, weight_decay=1e-4,
                            seed=0):
    """A linear classifier (softmax regression) trained on extracted features.

    The recipe, to follow exactly (the checks compare with it):
    ``torch.manual_seed(seed)``; ``clf = torch.nn.Linear(D, num_classes)`` (torch's
    default initialization); ``torch.optim.Adam(clf.parameters(), lr=lr,
    weight_decay=weight_decay)``; then ``epochs`` full-batch steps, each on the mean
    cross-entropy of all N examples (``torch.nn.functional.cross_entropy``), in float32.

    Inputs:
    - features: float array (N, D), numpy or torch (any float dtype); not modified.
    - labels: int array (N,), values in 0..num_classes-1 (some classes may be absent).
    - num_classes: int, the number of outputs.
    - epochs, lr, weight_decay: the number of full-batch Adam steps, its learning rate
      and its weight decay (L2 penalty).
    - seed: int, the seed of the initialization.

    Returns:
    - clf: the trained torch.nn.Linear(D, num_classes), in eval mode; ``clf(f).argmax(1)``
      predicts the classes of float32 features f (N, D).
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    torch.manual_seed(seed)
    clf = torch.nn.Linear(x.shape[1], int(num_classes))
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()
