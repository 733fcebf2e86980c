"""lowrankgan: low-rank subspaces in pretrained GANs for precise local image editing.

The data flows one way: model -> latent -> Jacobian field -> region Gram -> robust PCA ->
subspaces -> directions -> edits -> images and artifacts.
"""

__version__ = "0.1.0"

from lowrankgan.core.gram import jacobian_gram
from lowrankgan.core.jacobian import jacobian_field
from lowrankgan.core.metrics import locality  # noqa: E402
from lowrankgan.core.rpca import rpca, solve_rpca  # noqa: E402
from lowrankgan.errors import UserInputError  # noqa: E402
from lowrankgan.models import Model, list_models, load_model  # noqa: E402
from lowrankgan.pipeline.analysis import Analysis, analyze
from lowrankgan.pipeline.editing import edit, edit_analysis  # noqa: E402
from lowrankgan.pipeline.evaluation import EvaluationConfig, run_cells  # noqa: E402
from lowrankgan.pipeline.settings import AnalysisSettings
from lowrankgan.regions import region_mask  # noqa: E402
from lowrankgan.report.evaluation import evaluate  # noqa: E402

__all__ = [
    "Analysis",
    "AnalysisSettings",
    "Model",
    "EvaluationConfig",
    "UserInputError",
    "__version__",
    "analyze",
    "edit",
    "edit_analysis",
    "evaluate",
    "jacobian_field",
    "jacobian_gram",
    "list_models",
    "load_model",
    "locality",
    "region_mask",
    "rpca",
    "run_cells",
    "solve_rpca",
]
