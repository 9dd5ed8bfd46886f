"""The accounts service's one settings object (env prefix `ACCOUNTS_`).

Buckets and tolerances are validated when the settings are built: overlapping or gapped
ranges stop the service at start-up with a message naming the ranges.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from cascade.accounts.domain.buckets import (
    DEFAULT_BUCKETS,
    BucketConfigError,
    BucketSet,
    DelinquencyRange,
)
from cascade.accounts.domain.model import Policy
from cascade.shared.settings import ServiceSettings

ProductName = Literal["credit_card", "personal_loan", "auto_loan", "mortgage"]
PRODUCTS: tuple[str, ...] = ("credit_card", "personal_loan", "auto_loan", "mortgage")


class RangeSetting(BaseModel):
    label: str = Field(min_length=1, max_length=40)
    min_days: int = Field(ge=0)
    max_days: int | None = Field(default=None, ge=0)


class ToleranceSetting(BaseModel):
    product: ProductName
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    tolerance_minor: int = Field(ge=0)


class AccountsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_")

    service_name: str = "accounts"
    http_port: int = 8001
    # Per product; products not listed use the default ranges (current, 1-29, ..., 180+).
    # From the environment as JSON: ACCOUNTS_BUCKETS='{"mortgage": [{"label": ...}]}'.
    buckets: dict[ProductName, list[RangeSetting]] = Field(default_factory=dict)
    tolerances: list[ToleranceSetting] = Field(default_factory=list)
    consumer_max_records: int = Field(default=500, ge=1, le=10_000)
    # False for API-only replicas: they serve reads and pauses and leave the topics to others.
    consume_events: bool = True
    # A business-day close runs as one batch: a large portfolio needs more than the kit's
    # 60 s. With the 4 s that may follow a cut attempt before the next poll
    # (messaging.availability.BEYOND_BATCH_TIMEOUT_S), it must stay under the consumer's
    # max_poll_interval_ms (300 s; checked at boot).
    consumer_batch_timeout_s: float = Field(default=240.0, gt=0, lt=296)
    # Replicas share the work through one consumer group; tests give each run its own.
    consumer_group: str = Field(default="accounts", min_length=1)
    # How often the held-event gauges (cascade_accounts_held_*) are measured.
    held_gauges_every_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _buckets_are_usable(self) -> AccountsSettings:
        for product in self.buckets:
            self.policy(product)  # raises with the product named
        return self

    def policy(self, product: str) -> Policy:
        """Returns how `product`'s delinquency is classified."""
        tolerance = {t.currency: t.tolerance_minor for t in self.tolerances if t.product == product}
        ranges = self.buckets.get(product)  # type: ignore[call-overload]
        if ranges is None:
            return Policy(DEFAULT_BUCKETS, tolerance)
        try:
            buckets = BucketSet.of(
                (DelinquencyRange(r.label, r.min_days, r.max_days) for r in ranges),
                name=f"buckets of {product}",
            )
        except BucketConfigError as error:
            raise ValueError(str(error)) from None
        return Policy(buckets, tolerance)
