"""The training wing: datasets, the served face pipeline cached offline, augmentation, self-blending, training,
evaluation and calibration of the temporal classifier. ``training.research`` holds the model-selection tools."""
