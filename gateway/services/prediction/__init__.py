"""One prediction: its stages, the slots that bound how many run, the pipeline and the predictor that owns it."""
