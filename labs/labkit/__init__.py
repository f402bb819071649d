"""labkit: what students get with the labs.

- ``labkit.checks``: rel_error, numerical gradients, assertions with clear messages;
- ``labkit.data``: load_dataset (the offline *shapes* set, or CIFAR-10) and class_names;
- ``labkit.train``: fit, evaluate, predict, seeding and device choice;
- ``labkit.plot``: plot_history and show_images;
- ``labkit.zoo``: the shipped pretrained network (``load_pretrained``) and its card;
- ``labkit.stubs``: in a notebook, an unwritten stub's NotImplementedError says which
  function to write (installed on import).

It never holds solution code.
"""

from labkit import stubs as _stubs

_stubs.install()
