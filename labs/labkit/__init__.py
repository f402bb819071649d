"""labkit: what students get with the labs.

- ``labkit.checks``: rel_error, numerical gradients, assertions with clear messages;
- ``labkit.data``: load_dataset (the offline *shapes* set, or CIFAR-10) and class_names;
- ``labkit.train``: fit, evaluate, predict, seeding and device choice;
- ``labkit.plot``: plot_history and show_images.

It never holds solution code.
"""
