"""Model-selection tools: each answered one question of the model card (its docstring says which)."""
