"""The governance pages: the audit trail under /audit/ (namespace "governance") and the reviews
and evidence under /governance/ (namespace "evidence"), API tokens under /tokens/ (namespace
"tokens"), one views module per sub-domain."""

from django.urls import include, path

from governance.audit import views as audit
from governance.certificates import views as certificates
from governance.evidence import views as evidence
from governance.rootcause import views as incidents
from governance.thresholds import views as thresholds
from governance.tokens import views as tokens

audit_patterns = [
    path("", audit.audit_list, name="audit-list"),
    path("verify/", audit.audit_verify_view, name="audit-verify"),
]

governance_patterns = [
    path("certificates/", certificates.certificate_queue, name="certificate-queue"),
    path("certificates/canary/<int:canary_id>/decide/", certificates.certificate_decide_view,
         name="certificate-decide"),
    path("certificates/<uuid:certificate_id>/", certificates.certificate_detail, name="certificate-detail"),
    path("certificates/<uuid:certificate_id>/pdf/", certificates.certificate_pdf, name="certificate-pdf"),
    path("verify/<uuid:certificate_id>/", certificates.certificate_verify_page, name="certificate-verify-page"),
    path("incidents/", incidents.incident_list, name="incident-list"),
    path("incidents/<int:incident_id>/", incidents.incident_detail, name="incident-detail"),
    path("incidents/<int:incident_id>/root-cause/", incidents.root_cause_file, name="incident-root-cause"),
    path("incidents/<int:incident_id>/root-cause/review/", incidents.root_cause_review,
         name="incident-root-cause-review"),
    path("incidents/<int:incident_id>/reinitiation/", incidents.reinitiation_approve, name="incident-reinitiation"),
    path("incidents/<int:incident_id>/escalations/<int:escalation_id>/resolve/", incidents.escalation_resolve,
         name="incident-escalation-resolve"),
    path("threshold-changes/", thresholds.threshold_changes, name="threshold-changes"),
    path("threshold-changes/request/", thresholds.threshold_change_request, name="threshold-change-request"),
    path("threshold-changes/<int:change_id>/review/", thresholds.threshold_change_review,
         name="threshold-change-review"),
    path("metric-changes/<int:change_id>/review/", thresholds.metric_change_review, name="metric-change-review"),
    path("register/", evidence.mrm_register, name="mrm-register"),
    path("register.csv", evidence.mrm_register_csv, name="mrm-register-csv"),
    path("evidence/", evidence.evidence_page, name="evidence"),
    path("evidence/exports/<int:export_id>/progress/", evidence.evidence_export_progress, name="export-progress"),
    path("evidence/exports/<int:export_id>/download/", evidence.evidence_export_download, name="export-download"),
    path("signing-keys/", evidence.signing_keys_page, name="signing-keys"),
    path("signing-keys/verify_bundle.py", evidence.verifier_download, name="verifier-download"),
]

token_patterns = [
    path("", tokens.tokens_page, name="page"),
    path("create/", tokens.token_create, name="create"),
    path("<str:prefix>/revoke/", tokens.token_revoke, name="revoke"),
]

urlpatterns = [
    path("audit/", include((audit_patterns, "governance"))),
    path("tokens/", include((token_patterns, "tokens"))),
    path("governance/", include((governance_patterns, "evidence"))),
]
