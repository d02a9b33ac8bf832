"""Training Open-Sora Plan v1.5 style: flow-matching objective, adaptive gradient clipping, EMA of weights."""
