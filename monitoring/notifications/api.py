"""REST API of notifications: the caller's own feed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from canaryhub.api import QueryFilters, example_page, example_response, paginated, problems
from canaryhub.errors import PermissionRefused
from canaryhub.pagination import Pagination
from governance.access.permissions import Action, principal_of, require
from monitoring.notifications import selectors
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
                   responses={200: paginated(NotificationOutput), **problems(400, 401, 403)},
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


urlpatterns = [
    path("notifications/", NotificationList.as_view(), name="api-notification-list"),
]
