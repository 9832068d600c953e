"""Who may do what: the one place where access rules are written.

Every view, API endpoint and service asks `decide(principal, action, model=...)` (or `require`).
Roles are Django groups; a service account is a user in the `service_account` group acting
through a token scoped to a list of models, for one purpose: a `ci` token registers and changes
versions and starts and aborts canaries; an `observations` token only pushes metric windows (and
reads). The rules, as a table:

| action                 | model_owner | platform | mrm | ai_governance | risk_officer | on_call | auditor | service account |
|------------------------|-------------|----------|-----|---------------|--------------|---------|---------|-----------------|
| view                   | yes         | yes      | yes | yes           | yes          | yes     | yes     | scoped          |
| register_model         | as owner    | yes      |     |               |              |         |         |                 |
| change_model           | own         | yes      |     |               |              |         |         |                 |
| register_version       | own         | yes      |     |               |              |         |         | scoped ci       |
| change_version         | own         | yes      |     |               |              |         |         | scoped ci       |
| configure_metrics      |             | yes      |     |               |              |         |         | never           |
| start_canary           | own         | yes      |     |               |              |         |         | scoped ci       |
| abort_canary           | own         | yes      |     |               |              |         |         | scoped ci       |
| rollback_canary        | own         | yes      |     |               |              |         |         |                 |
| revert_canary          | own         | yes      |     |               |              |         |         |                 |
| break_glass            |             |          |     |               |              | yes     |         | never           |
| sign_owner             | own         |          |     |               |              |         |         | never           |
| sign_mrm               |             |          | yes |               |              |         |         | never           |
| issue_certificate      |             |          |     | yes           |              |         |         | never           |
| push_observations      |             | yes      |     |               |              |         |         | scoped obs.     |
| file_root_cause        |             | yes      |     |               |              | yes     |         |                 |
| accept_root_cause      |             |          | yes |               |              |         |         | never           |
| export_evidence        | own         | yes      | yes | yes           | yes          |         | yes     |                 |
| verify_audit           | yes         | yes      | yes | yes           | yes          | yes     | yes     |                 |
| manage_routers         |             | yes      |     |               |              |         |         |                 |
| manage_tokens          |             | yes      |     |               |              |         |         |                 |
| approve_reinitiation   | own         |          |     |               |              |         |         | never           |
| request_threshold_change | own       | yes      |     |               |              |         |         |                 |
| review_threshold_change |            |          | yes | yes           |              |         |         | never           |
| resolve_escalation     |             |          | yes | yes           |              |         |         | never           |

`configure_metrics` (a version's metric provider and PromQL overrides: what judges its canaries)
is a platform engineer's act; owners and tokens register versions with the deployment's default.
"own" means the model's registered owner; "as owner" means registering a model with oneself
as its owner (the service passes the unsaved model, so the same "own" rule decides). Risk officers and auditors read everything and change
nothing. Superusers are not special here: CanaryHub's rules bind the people who run it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from django.core.exceptions import PermissionDenied

from canaryhub.errors import PermissionRefused


class AIModel(Protocol):
    """What the rules read of a model of the register (releases.register.models.AIModel)."""

    pk: Any
    owner_id: Any
    name: str


class Role(StrEnum):
    MODEL_OWNER = "model_owner"
    PLATFORM = "platform"
    MRM = "mrm"
    AI_GOVERNANCE = "ai_governance"
    RISK_OFFICER = "risk_officer"
    ON_CALL = "on_call"
    AUDITOR = "auditor"
    SERVICE_ACCOUNT = "service_account"


HUMAN_ROLES = [r for r in Role if r is not Role.SERVICE_ACCOUNT]


class Action(StrEnum):
    VIEW = "view"
    REGISTER_MODEL = "register_model"
    CHANGE_MODEL = "change_model"
    REGISTER_VERSION = "register_version"
    CHANGE_VERSION = "change_version"
    CONFIGURE_METRICS = "configure_metrics"
    START_CANARY = "start_canary"
    ABORT_CANARY = "abort_canary"
    ROLLBACK_CANARY = "rollback_canary"
    REVERT_CANARY = "revert_canary"
    SIGN_OWNER = "sign_owner"
    SIGN_MRM = "sign_mrm"
    ISSUE_CERTIFICATE = "issue_certificate"
    PUSH_OBSERVATIONS = "push_observations"
    FILE_ROOT_CAUSE = "file_root_cause"
    ACCEPT_ROOT_CAUSE = "accept_root_cause"
    EXPORT_EVIDENCE = "export_evidence"
    VERIFY_AUDIT = "verify_audit"
    MANAGE_ROUTERS = "manage_routers"
    MANAGE_TOKENS = "manage_tokens"
    APPROVE_REINITIATION = "approve_reinitiation"
    REQUEST_THRESHOLD_CHANGE = "request_threshold_change"
    REVIEW_THRESHOLD_CHANGE = "review_threshold_change"
    RESOLVE_ESCALATION = "resolve_escalation"
    MANAGE_NOTIFICATIONS = "manage_notifications"
    # Clearing sticky assignments that disagree with the split in force, on demand (the periodic
    # sweep does it as the system): a platform engineer's act, with a reason, audited.
    CLEAR_STICKY = "clear_sticky"
    # The platform engineer's emergency path (pattern §3.2): an urgent PATCH version canaried
    # faster than the schedule (shorter residences; every signature, gate and the rollback rule
    # still apply), with a reason, an incident and MRM's retrospective review within 48 h.
    URGENT_PATCH = "urgent_patch"
    # The emergency path (pattern §3.2): on-call rolls a canary back, or reverts a watched one,
    # at once, with a mandatory reason, a page, an incident and MRM's retrospective review of its
    # root cause within 48 h (releases.canaries.services, break_glass=True).
    BREAK_GLASS = "break_glass"


# Actions that are acts of a person (signatures, certificates, acceptance): never a machine.
HUMAN_ONLY = frozenset(
    {Action.SIGN_OWNER, Action.SIGN_MRM, Action.ISSUE_CERTIFICATE, Action.ACCEPT_ROOT_CAUSE,
     Action.APPROVE_REINITIATION, Action.REVIEW_THRESHOLD_CHANGE, Action.RESOLVE_ESCALATION,
     Action.CONFIGURE_METRICS, Action.BREAK_GLASS, Action.CLEAR_STICKY,
     Action.URGENT_PATCH}
)

# Actions a role may take on any model.
_ANY_MODEL: dict[Role, frozenset[Action]] = {
    Role.PLATFORM: frozenset(
        {
            Action.VIEW, Action.REGISTER_MODEL, Action.CHANGE_MODEL, Action.REGISTER_VERSION,
            Action.CHANGE_VERSION, Action.CONFIGURE_METRICS, Action.START_CANARY, Action.ABORT_CANARY,
            Action.ROLLBACK_CANARY, Action.REVERT_CANARY, Action.PUSH_OBSERVATIONS, Action.FILE_ROOT_CAUSE,
            Action.EXPORT_EVIDENCE,
            Action.VERIFY_AUDIT, Action.MANAGE_ROUTERS, Action.MANAGE_TOKENS, Action.REQUEST_THRESHOLD_CHANGE,
            Action.MANAGE_NOTIFICATIONS, Action.CLEAR_STICKY, Action.URGENT_PATCH,
        }
    ),
    Role.MODEL_OWNER: frozenset({Action.VIEW, Action.VERIFY_AUDIT}),
    Role.MRM: frozenset({Action.VIEW, Action.SIGN_MRM, Action.ACCEPT_ROOT_CAUSE, Action.EXPORT_EVIDENCE,
                         Action.VERIFY_AUDIT, Action.REVIEW_THRESHOLD_CHANGE, Action.RESOLVE_ESCALATION}),
    Role.AI_GOVERNANCE: frozenset({Action.VIEW, Action.ISSUE_CERTIFICATE, Action.EXPORT_EVIDENCE, Action.VERIFY_AUDIT,
                                   Action.REVIEW_THRESHOLD_CHANGE, Action.RESOLVE_ESCALATION}),
    Role.RISK_OFFICER: frozenset({Action.VIEW, Action.EXPORT_EVIDENCE, Action.VERIFY_AUDIT}),
    Role.ON_CALL: frozenset({Action.VIEW, Action.FILE_ROOT_CAUSE, Action.VERIFY_AUDIT, Action.BREAK_GLASS}),
    Role.AUDITOR: frozenset({Action.VIEW, Action.EXPORT_EVIDENCE, Action.VERIFY_AUDIT}),
}

# Actions a model owner may take only on the models they own.
_OWN_MODEL = frozenset(
    {
        Action.REGISTER_MODEL, Action.CHANGE_MODEL, Action.REGISTER_VERSION, Action.CHANGE_VERSION, Action.START_CANARY,
        Action.ABORT_CANARY, Action.ROLLBACK_CANARY, Action.REVERT_CANARY, Action.SIGN_OWNER, Action.EXPORT_EVIDENCE,
        Action.APPROVE_REINITIATION, Action.REQUEST_THRESHOLD_CHANGE,
    }
)

# Actions a service account may take on the models its token is scoped to, by token purpose.
TOKEN_CI = "ci"
TOKEN_OBSERVATIONS = "observations"
_TOKEN_PURPOSES: dict[str, frozenset[Action]] = {
    TOKEN_CI: frozenset(
        {Action.VIEW, Action.REGISTER_VERSION, Action.CHANGE_VERSION, Action.START_CANARY, Action.ABORT_CANARY}
    ),
    # Pushes the numbers that judge canaries: it may not also start them or change versions.
    TOKEN_OBSERVATIONS: frozenset({Action.VIEW, Action.PUSH_OBSERVATIONS}),
}
_SERVICE_ACCOUNT = frozenset().union(*_TOKEN_PURPOSES.values())

# Actions that concern one model: a decision for them needs the model.
MODEL_SCOPED = frozenset(_OWN_MODEL | _SERVICE_ACCOUNT) - {Action.VIEW}


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user, and when they came in with a token, that token's scope.

    `scope` is None for a session or a personal token, and the set of model ids a service
    account's token may act on otherwise.
    """

    user: Any
    scope: frozenset[int] | None = None
    token_prefix: str | None = None
    token_purpose: str | None = None  # a service account's token: TOKEN_CI or TOKEN_OBSERVATIONS

    @property
    def is_service_account(self) -> bool:
        return Role.SERVICE_ACCOUNT in roles_of(self.user)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def roles_of(user: Any) -> frozenset[Role]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cached = getattr(user, "_canaryhub_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = frozenset(r for r in Role if r.value in names)
        user._canaryhub_roles = cached
    return cached


def as_principal(actor: Any) -> Principal:
    return actor if isinstance(actor, Principal) else Principal(user=actor)


def principal_of(request: Any) -> Principal:
    """The acting principal of a DRF or Django request: the bearer token's (governance.tokens
    sets it as `request.auth`), else the session's user."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, Principal):
        return auth
    return Principal(user=request.user)


def decide(actor: Any, action: Action, *, model: AIModel | None = None) -> Decision:
    principal = as_principal(actor)
    roles = roles_of(principal.user)
    if not roles:
        return Decision(False, "you have no CanaryHub role")
    if action in MODEL_SCOPED and model is None:
        # Asking "may I do this to some model?" (e.g. to show a button on a list page).
        allowed = any(_decide_roles(principal, roles, action, None))
        return Decision(allowed, "depends on the model" if allowed else f"you may not {action.value.replace('_', ' ')}")
    if Role.SERVICE_ACCOUNT in roles:
        if action in HUMAN_ONLY:
            return Decision(False, f"{action} is a human act; service accounts can never do it")
        if action not in _SERVICE_ACCOUNT:
            return Decision(False, f"service accounts may not {action}")
        purpose = principal.token_purpose or TOKEN_CI
        if action not in _TOKEN_PURPOSES.get(purpose, frozenset()):
            return Decision(False, f"a token for {purpose} may not {action}")
        if model is not None and (principal.scope is None or model.pk not in principal.scope):
            return Decision(False, f"this token is not scoped to model {model.name!r}")
        return Decision(True, "service account within its token's scope")
    for allowed in _decide_roles(principal, roles, action, model):
        if allowed:
            return Decision(True, "allowed")
    if action in _OWN_MODEL and Role.MODEL_OWNER in roles and model is not None:
        return Decision(False, f"only the owner of {model.name!r} (or a platform engineer) may {action}")
    return Decision(False, f"your roles ({', '.join(sorted(roles))}) may not {action}")


def _decide_roles(principal: Principal, roles: frozenset[Role], action: Action, model: AIModel | None):
    for role in roles:
        if action in _ANY_MODEL.get(role, frozenset()):
            yield True
        if role is Role.MODEL_OWNER and action in _OWN_MODEL:
            yield model is None or model.owner_id == principal.user.pk
        if role is Role.SERVICE_ACCOUNT and action in _TOKEN_PURPOSES.get(principal.token_purpose or TOKEN_CI, ()):
            yield True


def require(actor: Any, action: Action, *, model: AIModel | None = None) -> None:
    """Raise PermissionRefused unless allowed; used by services as their first line. An action
    that concerns one model is refused without its model: "allowed on some model" never lets it
    through (ask `require_some` for that, before the model is known)."""
    if action in MODEL_SCOPED and model is None:
        raise PermissionRefused(f"{action.value.replace('_', ' ')} concerns one model: the model must be named")
    decision = decide(actor, action, model=model)
    if not decision.allowed:
        raise PermissionRefused(decision.reason)


def require_some(actor: Any, action: Action) -> None:
    """PermissionRefused unless the principal may take `action` on at least one model: the first
    check of an endpoint whose model is only named in the body, so who may never act is refused
    before the body is read. The action itself still needs `require` with its model."""
    decision = decide(actor, action)
    if not decision.allowed:
        raise PermissionRefused(decision.reason)


def models_where(actor: Any, action: Action) -> dict[str, Any] | None:
    """Queryset filter kwargs (for the register's models) restricting to the models on which the
    principal may take `action`, or None when it may on every model."""
    principal = as_principal(actor)
    roles = roles_of(principal.user)
    if Role.SERVICE_ACCOUNT in roles:
        allowed = decide(principal, action, model=None).allowed
        return {"pk__in": list(principal.scope or ())} if allowed else {"pk__in": []}
    if any(action in _ANY_MODEL.get(role, frozenset()) for role in roles):
        return None
    if Role.MODEL_OWNER in roles and action in _OWN_MODEL:
        return {"owner": principal.user}
    return {"pk__in": []}


def may_or_break_glass(actor: Any, action: Action, *, model: AIModel) -> bool:
    """Whether `actor` may take an emergency `action` (a rollback, a revert) on `model`: by its
    own right, or as on-call under break-glass."""
    return decide(actor, action, model=model).allowed or decide(actor, Action.BREAK_GLASS, model=model).allowed


def break_glass_needed(actor: Any, action: Action, *, model: AIModel) -> bool:
    """False when `actor` may take the emergency `action` on `model` by its own right, True when
    only under break-glass; PermissionRefused when neither (checked before any input is read)."""
    if decide(actor, action, model=model).allowed:
        return False
    require(actor, Action.BREAK_GLASS, model=model)
    return True


def require_page(user: Any, action: Action, *, model: AIModel | None = None) -> None:
    """For HTML views: Django's PermissionDenied (a 403 page) unless `action` is allowed (on
    `model`, when given; without a model, a model-scoped action is allowed when it is on some
    model — a page's first check before it reads which model)."""
    decision = decide(user, action, model=model)
    if not decision.allowed:
        if action in MODEL_SCOPED and model is None:
            # Asked about "some model", decide() gives no specific reason; name the refusal.
            raise PermissionDenied(f"your roles may not {action.value.replace('_', ' ')}")
        raise PermissionDenied(decision.reason)


def refuse_machine(actor: Any, what: str) -> None:
    """PermissionRefused for a service account asking to do a human act. APIs call it before
    any lookup, so a token learns nothing about the object it may not act on."""
    if as_principal(actor).is_service_account:
        raise PermissionRefused(f"service accounts never {what}: it is a human act")


def may_see_model(actor: Any, model_id: Any) -> bool:
    """Whether the principal may see the model with this id (a scoped token sees only its scope)."""
    restriction = visible_models_filter(actor)
    return restriction is None or model_id in restriction["pk__in"]


def visible_models_filter(actor: Any) -> dict[str, Any] | None:
    """Queryset filter kwargs restricting reads to what the principal may see, or None for all."""
    principal = as_principal(actor)
    if Role.SERVICE_ACCOUNT in roles_of(principal.user):
        return {"pk__in": list(principal.scope or ())}
    return None
