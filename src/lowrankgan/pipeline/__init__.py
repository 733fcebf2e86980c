"""The pipeline: settings -> analysis (Grams, robust PCA, directions) -> edits -> evaluation."""
