"""The math: Jacobian fields, region Grams, robust PCA, subspaces, directions and metrics.

Tensors in, tensors out. A generator is seen only through `models.base.Model`; nothing here
reads files, draws pictures or knows a model family.
"""
