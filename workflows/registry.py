"""Every workflow type the worker runs."""

from workflows.catalogue_sync import CatalogueSyncWorkflow
from workflows.esim_expiry import EsimExpiryWorkflow
from workflows.esim_refresh import EsimRefreshWorkflow
from workflows.esim_usage import EsimUsageWorkflow
from workflows.housekeeping import HousekeepingWorkflow
from workflows.invoicing import InvoicingWorkflow
from workflows.notification import NotificationWorkflow
from workflows.order import OrderWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.refund import RefundWorkflow
from workflows.supplier_balance import SupplierBalanceWorkflow
from workflows.supplier_orders import SupplierOrdersWorkflow
from workflows.topup import TopupWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow

WORKFLOWS: list[type] = [
    CatalogueSyncWorkflow,
    EsimExpiryWorkflow,
    EsimRefreshWorkflow,
    EsimUsageWorkflow,
    HousekeepingWorkflow,
    InvoicingWorkflow,
    NotificationWorkflow,
    OrderWorkflow,
    ReconciliationWorkflow,
    RefundWorkflow,
    SupplierBalanceWorkflow,
    SupplierOrdersWorkflow,
    TopupWorkflow,
    WebhookDeliveryWorkflow,
]
