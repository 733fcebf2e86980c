"""Presentation: images, grids and animations, charts, HTML reports, the evaluation report
and the demo."""
