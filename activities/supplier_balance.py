"""The eSIM Go organisation balance, which pays for every order: read on the `supplier-balance` schedule
(on the rate-limited supplier task queue), put on the worker's metrics, and a warning logged while it is
below SUPPLIER_LOW_BALANCE_MINOR, so it is topped up before orders start failing for want of it."""

from __future__ import annotations

import logging

from temporalio import activity

from activities.contracts import READ_SUPPLIER_BALANCE, SupplierBalance, SupplierBalanceCheck
from activities.supplier_errors import as_application_error
from ttelgo import business_metrics
from ttelgo.esimgo import EsimGoClient, SupplierError

log = logging.getLogger(__name__)


class SupplierBalanceActivities:
    def __init__(self, esimgo: EsimGoClient) -> None:
        self.esimgo = esimgo

    @activity.defn(name=READ_SUPPLIER_BALANCE)
    async def read_balance(self, check: SupplierBalanceCheck) -> SupplierBalance:
        try:
            organisation = await self.esimgo.get_organisation()
        except SupplierError as exc:
            raise as_application_error(exc) from exc
        threshold = check.low_balance_minor
        low = threshold is not None and organisation.balance_minor < threshold
        business_metrics.supplier_balance(
            activity.metric_meter(),
            currency=organisation.currency,
            balance_minor=organisation.balance_minor,
            low=low,
        )
        if low:
            log.warning(
                "eSIM Go balance is low: %d %s minor units, below SUPPLIER_LOW_BALANCE_MINOR (%d); "
                "top it up before orders fail",
                organisation.balance_minor,
                organisation.currency,
                threshold,
            )
        return SupplierBalance(
            currency=organisation.currency, balance_minor=organisation.balance_minor, low=low
        )
