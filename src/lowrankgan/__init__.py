"""lowrankgan: low-rank subspaces in pretrained GANs for precise local image editing.

The data flows one way: model -> latent -> Jacobian field -> region Gram -> robust PCA ->
subspaces -> directions -> edits -> images and artifacts. The package's folders are those
layers (docs/architecture.md); this module re-exports the public API.
"""

from lowrankgan.core.gram import jacobian_gram
from lowrankgan.core.jacobian import jacobian_field
from lowrankgan.core.metrics import locality
from lowrankgan.core.rpca import rpca, solve_rpca
from lowrankgan.errors import UserInputError
from lowrankgan.models import Family, Model, list_models, load_model, register_family
from lowrankgan.pipeline.analysis import Analysis, analysis_field, analyze, lifted_analysis
from lowrankgan.pipeline.editing import Edits, edit, edit_analysis, edit_many
from lowrankgan.pipeline.evaluation import EvaluationConfig, run_cells
from lowrankgan.pipeline.settings import AnalysisSettings
from lowrankgan.regions import region_mask
from lowrankgan.report.evaluation import evaluate
from lowrankgan.version import __version__

__all__ = [
    "Analysis",
    "AnalysisSettings",
    "Edits",
    "EvaluationConfig",
    "Family",
    "Model",
    "UserInputError",
    "__version__",
    "analysis_field",
    "analyze",
    "edit",
    "edit_analysis",
    "edit_many",
    "evaluate",
    "jacobian_field",
    "jacobian_gram",
    "lifted_analysis",
    "list_models",
    "load_model",
    "locality",
    "region_mask",
    "register_family",
    "rpca",
    "run_cells",
    "solve_rpca",
]
