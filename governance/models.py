"""The governance app's models, defined in its sub-packages and gathered here for Django.

Two records whose tables carry the `governance_` prefix are defined with the canary they belong
to, in releases.canaries.models (app label "governance"): `Approval` (a signature on a canary's
step) and `ThresholdChangeRequest` (a reviewed change of a running canary's thresholds).
Nothing imports this module: code imports the sub-package that defines the model it needs.
"""

from governance.audit.models import AuditChainHead, AuditEvent, RefusalTally
from governance.certificates.models import Certificate
from governance.evidence.models import ChainHeadExport, EvidenceExport
from governance.incidents.models import CommitteeEscalation, Incident, ReinitiationApproval, RootCauseReport
from governance.tokens.models import ApiToken, IdempotencyRecord

__all__ = [
    "ApiToken", "AuditChainHead", "AuditEvent", "Certificate", "ChainHeadExport", "CommitteeEscalation",
    "EvidenceExport", "IdempotencyRecord", "Incident", "RefusalTally", "ReinitiationApproval",
    "RootCauseReport",
]
