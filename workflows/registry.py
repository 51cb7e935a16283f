"""Every workflow type the worker runs."""

from workflows.catalogue_sync import CatalogueSyncWorkflow
from workflows.esim_usage import EsimUsageWorkflow

WORKFLOWS: list[type] = [CatalogueSyncWorkflow, EsimUsageWorkflow]
