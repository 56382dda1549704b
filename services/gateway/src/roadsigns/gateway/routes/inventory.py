"""The sign inventory: one point per physical sign over the caller's located jobs, as GeoJSON or CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from roadsigns.gateway import repository
from roadsigns.gateway.auth import Tenant
from roadsigns.gateway.deps import Services, ServicesDep, SessionDep
from roadsigns.shared import inventory
from roadsigns.shared.inventory import BBox, PhysicalSign
from roadsigns.shared.schemas import Inventory

router = APIRouter(tags=["inventory"])


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"


BBoxQuery = Annotated[
    str | None,
    Query(
        max_length=200,
        description="minlon,minlat,maxlon,maxlat (degrees): signs whose point lies inside; minlon > maxlon "
        "crosses the antimeridian",
        examples=["13.30,52.45,13.50,52.56"],
    ),
]
ClassQuery = Annotated[int | None, Query(ge=0, le=2**31 - 1, description="only signs of this class (0-42)")]
SinceQuery = Annotated[
    datetime | None, Query(description="only signs last seen at or after this time (ISO 8601; UTC without an offset)")
]
_BAD_FILTER: dict[int | str, dict[str, Any]] = {422: {"description": "a bad bbox, class_id or since"}}


def _signs(
    session: Session,
    services: Services,
    tenant: str,
    bbox: str | None,
    class_id: int | None,
    since: datetime | None,
) -> list[PhysicalSign]:
    """Merge the tenant's sightings (of the class; in the box and as far again as a sign may
    reach beyond it), then keep the signs whose point is in the box and seen since `since`."""
    try:
        box = BBox.parse(bbox) if bbox is not None else None
    except ValueError as exc:
        raise HTTPException(422, f"bbox: {exc}") from None
    if since is not None:
        try:
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        except OverflowError:
            raise HTTPException(422, "since: the time is out of range") from None
    merge_m = services.settings.inventory_merge_m
    # Every sighting of a sign lies within merge_m of its first, and so does its mean: within
    # twice that of the point.
    read_box = box.widened(2 * merge_m) if box is not None else None
    signs = inventory.merge(repository.sightings(session, tenant, class_id, read_box), merge_m)
    return [s for s in signs if (box is None or box.contains(s.lat, s.lon)) and (since is None or s.last_seen >= since)]


@router.get("/inventory", response_model=Inventory, response_class=GeoJSONResponse, responses=_BAD_FILTER)
def get_inventory(
    session: SessionDep,
    services: ServicesDep,
    tenant: Tenant,
    bbox: BBoxQuery = None,
    class_id: ClassQuery = None,
    since: SinceQuery = None,
) -> GeoJSONResponse:
    """The caller's physical signs as GeoJSON points: sightings of one class and text close together, merged."""
    return GeoJSONResponse(inventory.feature_collection(_signs(session, services, tenant, bbox, class_id, since)))


@router.get(
    "/inventory.csv",
    response_class=Response,
    responses={
        200: {"description": "one row per sign", "content": {"text/csv": {"schema": {"type": "string"}}}},
        **_BAD_FILTER,
    },
)
def get_inventory_csv(
    session: SessionDep,
    services: ServicesDep,
    tenant: Tenant,
    bbox: BBoxQuery = None,
    class_id: ClassQuery = None,
    since: SinceQuery = None,
) -> Response:
    """The same signs as GET /inventory, as CSV: a row per sign, its job ids space-separated."""
    signs = _signs(session, services, tenant, bbox, class_id, since)
    return Response(
        inventory.to_csv(signs),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="inventory.csv"'},
    )
