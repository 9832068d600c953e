"""The releases app's models, defined in its sub-packages and gathered here for Django.

releases.register.models: RiskTier, AIModel, Consumer, ModelVersion;
releases.routing.models: RouterPush, RouterConfig, StickySweep;
releases.canaries.models: Canary, and the governance records Approval and ThresholdChangeRequest.
Nothing imports this module: code imports the sub-package that defines the model it needs.
"""

from releases.canaries.models import Approval, Canary, ThresholdChangeRequest
from releases.register.models import AIModel, Consumer, ModelVersion, RiskTier
from releases.routing.models import RouterConfig, RouterPush, StickySweep

__all__ = [
    "AIModel", "Approval", "Canary", "Consumer", "ModelVersion", "RiskTier", "RouterConfig", "RouterPush",
    "StickySweep", "ThresholdChangeRequest",
]
