"""The accounts API (placeholder until the read and pause endpoints land)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
