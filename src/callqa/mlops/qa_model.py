"""Models-from-code file of the registered scoring pipeline (`callqa register` logs it).

MLflow copies this file into the model and runs it on load, so it only imports the installed
callqa package: the pyfunc's logic lives in `callqa.mlops.pyfunc`.
"""

from mlflow.pyfunc import PythonModel

import mlflow
from callqa.mlops.pyfunc import CallqaPipeline


class QAPipelineModel(CallqaPipeline, PythonModel):
    """Audio (base64) in, the `callqa score` QA result JSON out."""


mlflow.models.set_model(QAPipelineModel())
