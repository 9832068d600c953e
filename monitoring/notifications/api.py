"""REST API of notifications: the caller's own feed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import (
    QueryFilters,
    StrictCharField,
    example_page,
    example_request,
    example_response,
    paginated,
    problems,
)
from canaryhub.errors import PermissionRefused
from canaryhub.pagination import Pagination
from governance.access.permissions import Action, principal_of, require
from monitoring.notifications import selectors, services
from monitoring.notifications.messages import render

_EXAMPLE = {
    "id": 91, "kind": "canary.rolled_back", "canary_id": 7, "title": "Canary ROLLED BACK",
    "text": "Canary ROLLED BACK\n\nmodel: support-bot\nversion: 1.5.0\nreason: automatic: error_rate red\n",
    "link": "https://canaryhub.example.com/canaries/7/", "created_at": "2025-05-04T11:00:00Z",
    "read_at": None, "delivered": {"feed": "2025-05-04T11:00:00Z", "email": "2025-05-04T11:00:03Z"},
}


class NotificationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    canary_id = serializers.IntegerField(allow_null=True)
    title = serializers.CharField()
    text = serializers.CharField()
    link = serializers.CharField()
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    delivered = serializers.DictField(child=serializers.DateTimeField(allow_null=True),
                                      help_text="when it reached you on each channel (null: not yet)")


class NotificationFilters(QueryFilters):
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


def _item(delivery: Any, delivered: dict[int, dict[str, Any]]) -> dict[str, Any]:
    event = delivery.event
    message = render(kind=event.kind, canary_id=event.canary_id, payload=event.payload,
                     base_url=settings.NOTIFY_BASE_URL)
    return {"id": delivery.pk, "kind": event.kind, "canary_id": event.canary_id, "title": message.title,
            "text": message.text, "link": message.link, "created_at": event.created_at, "read_at": delivery.read_at,
            "delivered": delivered.get(event.pk, {})}


class NotificationList(APIView):
    @extend_schema(operation_id="notifications_list", parameters=[NotificationFilters], tags=["notifications"],
                   summary="List your notifications",
                   description="The caller's own notification feed, newest first: each item's event kind, canary, "
                   "text, a link to the page with the evidence, when it was written and when it reached the caller "
                   "on each channel (feed, e-mail). Nobody can read another person's feed; a service account has "
                   "no feed (403).",
                   responses={200: paginated(NotificationOutput), **problems(400, 401, 403, 404)},
                   examples=[example_response(example_page(_EXAMPLE))])
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.VIEW)
        if principal.is_service_account:
            raise PermissionRefused("a service account has no notification feed")
        filters = NotificationFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.feed(principal.user), request, view=self)
        delivered = selectors.delivered_per_channel(principal.user, [d.event_id for d in page])
        return paginator.get_paginated_response(NotificationOutput([_item(d, delivered) for d in page],
                                                                   many=True).data)


class AlertInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["firing", "resolved"])
    labels = serializers.DictField(child=StrictCharField(max_length=500, allow_blank=True))
    annotations = serializers.DictField(child=StrictCharField(max_length=5000, allow_blank=True),
                                        required=False, default=dict)
    startsAt = StrictCharField(max_length=64, required=False, default="")  # noqa: N815 (Alertmanager's name)
    fingerprint = StrictCharField(max_length=64, required=False, default="")


class AlertmanagerInput(serializers.Serializer):
    """Alertmanager's webhook body (version 4); fields CanaryHub does not read are ignored."""

    version = StrictCharField(max_length=8, required=False, default="4")
    status = serializers.ChoiceField(choices=["firing", "resolved"])
    alerts = AlertInput(many=True, max_length=1000)


_ALERT_EXAMPLE = {
    "version": "4", "status": "firing", "receiver": "page-on-call",
    "alerts": [{"status": "firing", "labels": {"alertname": "CanaryHubEvaluatorSilent", "severity": "P1"},
                "annotations": {"summary": "CanaryHub evaluator heartbeat missing for more than 10 minutes"},
                "startsAt": "2025-05-04T11:00:00Z", "fingerprint": "3f2a9c1d"}],
}


def inline_answer() -> Any:
    return inline_serializer("AlertsRecorded", fields={"recorded": serializers.IntegerField()})


class AlertmanagerReceiver(APIView):
    @extend_schema(operation_id="alerts_alertmanager_receive", request=AlertmanagerInput, tags=["notifications"],
                   summary="Receive Prometheus alerts from Alertmanager",
                   description="Alertmanager's webhook receiver (deploy/alertmanager/alertmanager.yml): each "
                   "firing or resolved alert becomes a notification to on-call and platform (the feed and "
                   "e-mail; the page itself is Alertmanager's PagerDuty route), once per alert and start time. "
                   "Needs a platform engineer's API token.",
                   responses={202: inline_answer(), **problems(400, 401, 403)},
                   examples=[example_request(_ALERT_EXAMPLE), example_response({"recorded": 1}, status=202)])
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        require(principal, Action.MANAGE_NOTIFICATIONS)
        data = AlertmanagerInput(data=request.data)
        data.is_valid(raise_exception=True)
        recorded = services.alerts_record(alerts=data.validated_data["alerts"])
        return Response({"recorded": recorded}, status=202)


urlpatterns = [
    path("notifications/", NotificationList.as_view(), name="api-notification-list"),
    path("alerts/alertmanager/", AlertmanagerReceiver.as_view(), name="api-alertmanager"),
]
