"""The catalogue of official checkpoints and their verified download."""
