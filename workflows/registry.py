"""Every workflow type the worker runs."""

from workflows.catalogue_sync import CatalogueSyncWorkflow

WORKFLOWS: list[type] = [CatalogueSyncWorkflow]
