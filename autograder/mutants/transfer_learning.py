"""Seeded student bugs for Lab 05 (transfer learning).

Each is a mistake seen in real fine-tuning code or one step away from one. The selfcheck
proves that the hidden checks catch every one of them.
"""

import types

import numpy as np
import torch

from autograder.mutants import mutant
from solutions.transfer_learning import (
    extract_features,
    freeze,
    parameter_groups,
    train_linear_classifier,
)


@mutant("count_parameters counts frozen parameters as trainable", replaces="count_parameters")
def count_parameters_ignores_flag(model, trainable_only=False):
    return int(sum(p.numel() for p in model.parameters()))


@mutant("count_parameters sums the state_dict (batch-norm buffers counted as parameters)",
        replaces="count_parameters")
def count_parameters_state_dict(model, trainable_only=False):
    return int(sum(v.numel() for v in model.state_dict().values()
                   if not trainable_only or v.requires_grad))


@mutant("count_parameters counts the parameter tensors, not the scalars in them",
        replaces="count_parameters")
def count_parameters_tensors(model, trainable_only=False):
    return len([p for p in model.parameters() if p.requires_grad or not trainable_only])


@mutant("replace_head keeps the old head's weights (copies its first rows)",
        replaces="replace_head")
def replace_head_keeps_old_weights(model, num_classes):
    old = model.fc
    new = torch.nn.Linear(old.in_features, num_classes)
    with torch.no_grad():
        k = min(num_classes, old.out_features)
        new.weight[:k] = old.weight[:k]
        new.bias[:k] = old.bias[:k]
    model.fc = new
    return model


@mutant("replace_head builds Linear(512, num_classes): ResNet-18's input size, hard-coded",
        replaces="replace_head")
def replace_head_hardcoded_512(model, num_classes):
    model.fc = torch.nn.Linear(512, num_classes)
    return model


@mutant("replace_head reads the old head's out_features as its input size", replaces="replace_head")
def replace_head_wrong_input_size(model, num_classes):
    model.fc = torch.nn.Linear(model.fc.out_features, num_classes)
    return model


@mutant("replace_head initializes the new head to zeros", replaces="replace_head")
def replace_head_zero_init(model, num_classes):
    old = model.fc
    model.fc = torch.nn.Linear(old.in_features, num_classes).to(old.weight.dtype)
    torch.nn.init.zeros_(model.fc.weight)
    torch.nn.init.zeros_(model.fc.bias)
    return model


@mutant("replace_head ignores the old head's dtype (a float32 head on a float64 model)",
        replaces="replace_head")
def replace_head_float32(model, num_classes):
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model


@mutant("freeze sets requires_grad=False but leaves the frozen batch-norm layers in train mode",
        replaces="freeze")
def freeze_bn_in_train_mode(model, train_from=None):
    names = [n for n, _ in model.named_children()]
    first = names.index(train_from if train_from is not None else names[-1])
    for i, (_, block) in enumerate(model.named_children()):
        for p in block.parameters():
            p.requires_grad_(i >= first)
    return model


@mutant("freeze puts frozen batch-norm layers in eval mode once; model.train() undoes it",
        replaces="freeze")
def freeze_bn_eval_once(model, train_from=None):
    names = [n for n, _ in model.named_children()]
    if train_from is None:
        train_from = names[-1]
    if train_from not in names:
        raise ValueError(train_from)
    first = names.index(train_from)
    for i, (_, block) in enumerate(model.named_children()):
        for p in block.parameters():
            p.requires_grad_(i >= first)
        if i < first:
            for m in block.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
    return model


@mutant("freeze also freezes the new head (everything frozen when train_from is None)",
        replaces="freeze")
def freeze_head_too(model, train_from=None, _reference=freeze):
    model = _reference(model, train_from)
    if train_from is None:
        model.fc.requires_grad_(False)
    return model


@mutant("freeze only ever freezes: a second call does not unfreeze anything", replaces="freeze")
def freeze_never_unfreezes(model, train_from=None):
    def keep_eval(self, mode=True):
        return torch.nn.Module.train(self, False)

    names = [n for n, _ in model.named_children()]
    if train_from is None:
        train_from = names[-1]
    if train_from not in names:
        raise ValueError(train_from)
    first = names.index(train_from)
    for i, (_, block) in enumerate(model.named_children()):
        if i < first:
            block.requires_grad_(False)
            for m in block.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.train = types.MethodType(keep_eval, m)
                    m.train()
    return model


@mutant("freeze stops the running statistics with momentum=0 but keeps BN in train mode "
        "(batch statistics used)", replaces="freeze")
def freeze_momentum_zero(model, train_from=None):
    names = [n for n, _ in model.named_children()]
    if train_from is None:
        train_from = names[-1]
    if train_from not in names:
        raise ValueError(train_from)
    first = names.index(train_from)
    for i, (_, block) in enumerate(model.named_children()):
        for p in block.parameters():
            p.requires_grad_(i >= first)
        if i < first:
            for m in block.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = 0.0
    return model


@mutant("freeze calls model.eval() on the whole model (trainable layers in eval mode too)",
        replaces="freeze")
def freeze_whole_model_eval(model, train_from=None, _reference=freeze):
    model = _reference(model, train_from)
    model.eval()
    return model


@mutant("freeze(model, train_from) freezes train_from itself (off by one block)", replaces="freeze")
def freeze_off_by_one(model, train_from=None, _reference=freeze):
    names = [n for n, _ in model.named_children()]
    if train_from is not None and train_from in names and names.index(train_from) + 1 < len(names):
        train_from = names[names.index(train_from) + 1]
    return _reference(model, train_from)


@mutant("extract_features runs the model in train mode (batch norm uses the batch statistics)",
        replaces="extract_features")
def extract_features_train_mode(model, x, batch_size=256):
    x = torch.as_tensor(x, dtype=torch.float32)
    out = []
    hook = model.fc.register_forward_hook(lambda m, i, o: out.append(i[0].detach()))
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
    hook.remove()
    return torch.cat(out).numpy()


@mutant("extract_features computes the features with gradients on (no torch.no_grad())",
        replaces="extract_features")
def extract_features_with_grad(model, x, batch_size=256):
    x = torch.as_tensor(x, dtype=torch.float32)
    out = []
    hook = model.fc.register_forward_hook(lambda m, i, o: out.append(i[0]))
    model.eval()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    hook.remove()
    return torch.cat(out).detach().numpy()


@mutant("extract_features ignores batch_size (the whole of x in one forward pass)",
        replaces="extract_features")
def extract_features_one_batch(model, x, batch_size=256, _reference=extract_features):
    return _reference(model, x, batch_size=len(x))


@mutant("extract_features replaces model.fc by Identity and never puts it back",
        replaces="extract_features")
def extract_features_drops_head(model, x, batch_size=256):
    model.fc = torch.nn.Identity()
    model.eval()
    x = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        out = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


@mutant("parameter_groups puts every trainable parameter in the backbone group, the head's too "
        "(a parameter in two groups)", replaces="parameter_groups")
def parameter_groups_head_twice(model, backbone_lr, head_lr):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [(n, p) for n, p in named if n.startswith("fc.")]
    groups = [{"names": [n for n, _ in named], "params": [p for _, p in named], "lr": backbone_lr},
              {"names": [n for n, _ in head], "params": [p for _, p in head], "lr": head_lr}]
    return groups


@mutant("parameter_groups puts only the weights of the backbone in its group (BN and biases "
        "in none)",
        replaces="parameter_groups")
def parameter_groups_misses_1d(model, backbone_lr, head_lr, _reference=parameter_groups):
    groups = _reference(model, backbone_lr, head_lr)
    for g in groups[:-1]:
        keep = [i for i, p in enumerate(g["params"]) if p.ndim > 1]
        g["names"] = [g["names"][i] for i in keep]
        g["params"] = [g["params"][i] for i in keep]
    return groups


@mutant("parameter_groups swaps the learning rates of the backbone and the head",
        replaces="parameter_groups")
def parameter_groups_swapped(model, backbone_lr, head_lr, _reference=parameter_groups):
    return _reference(model, head_lr, backbone_lr)


@mutant("parameter_groups puts frozen parameters in the backbone group",
        replaces="parameter_groups")
def parameter_groups_with_frozen(model, backbone_lr, head_lr):
    backbone = [(n, p) for n, p in model.named_parameters() if not n.startswith("fc.")]
    head = [(n, p) for n, p in model.named_parameters() if n.startswith("fc.") and p.requires_grad]
    return [{"names": [n for n, _ in backbone], "params": [p for _, p in backbone],
             "lr": backbone_lr},
            {"names": [n for n, _ in head], "params": [p for _, p in head], "lr": head_lr}]


@mutant("parameter_groups keeps an empty backbone group when the backbone is frozen",
        replaces="parameter_groups")
def parameter_groups_empty_group(model, backbone_lr, head_lr, _reference=parameter_groups):
    groups = _reference(model, backbone_lr, head_lr)
    if len(groups) == 1:
        groups.insert(0, {"names": [], "params": [], "lr": backbone_lr})
    return groups


@mutant("train_linear_classifier takes the number of classes from the labels (max + 1)",
        replaces="train_linear_classifier")
def train_linear_classifier_classes_from_labels(features, labels, num_classes, epochs=100,
                                                lr=0.01, weight_decay=1e-4, seed=0,
                                                _reference=train_linear_classifier):
    k = int(np.max(labels)) + 1
    return _reference(features, labels, k, epochs, lr, weight_decay, seed)


@mutant("train_linear_classifier ignores weight_decay", replaces="train_linear_classifier")
def train_linear_classifier_no_decay(features, labels, num_classes, epochs=100, lr=0.01,
                                     weight_decay=1e-4, seed=0, _reference=train_linear_classifier):
    return _reference(features, labels, num_classes, epochs, lr, 0.0, seed)


@mutant("train_linear_classifier never seeds torch", replaces="train_linear_classifier")
def train_linear_classifier_unseeded(features, labels, num_classes, epochs=100, lr=0.01,
                                     weight_decay=1e-4, seed=0):
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    clf = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.Adam(clf.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@mutant("extract_features keeps the images' dtype: float64 images reach a float32 model",
        replaces="extract_features")
def extract_features_keeps_dtype(model, x, batch_size=256, _ref=extract_features):
    t = torch.as_tensor(x)
    if t.dtype != torch.float32 and len(t):
        model.eval()
        with torch.no_grad():
            model(t[:1])  # RuntimeError: float64 input, float32 weights
    return _ref(model, x, batch_size)


@mutant("train_linear_classifier's learning rate defaults to 0.001 (Adam's own default)",
        replaces="train_linear_classifier")
def train_linear_classifier_lr_default(features, labels, num_classes, epochs=100, lr=0.001,
                                       weight_decay=1e-4, seed=0, _ref=train_linear_classifier):
    return _ref(features, labels, num_classes, epochs, lr, weight_decay, seed)


@mutant("freeze(model) with no train_from trains the block before the head too (it unfreezes "
        "from the second-to-last child, a slip that shows only when that block has parameters)",
        replaces="freeze")
def freeze_default_two_blocks(model, train_from=None, _reference=freeze):
    if train_from is None:
        train_from = [name for name, _ in model.named_children()][-2]
    return _reference(model, train_from)
