"""eSIM Go anti-corruption layer: nothing outside this package knows the supplier's field names."""

from ttelgo.esimgo.client import EsimGoClient
from ttelgo.esimgo.errors import (
    PermanentReason,
    SupplierError,
    SupplierPermanentError,
    SupplierRetryableError,
)
from ttelgo.esimgo.types import (
    Bundle,
    BundleUsage,
    CataloguePage,
    Country,
    EsimProfile,
    Organisation,
    SupplierOrder,
)

__all__ = [
    "Bundle",
    "BundleUsage",
    "CataloguePage",
    "Country",
    "EsimGoClient",
    "EsimProfile",
    "Organisation",
    "PermanentReason",
    "SupplierError",
    "SupplierOrder",
    "SupplierPermanentError",
    "SupplierRetryableError",
]
