"""Domain types: pure data and rules, no I/O."""

from scaler.domain.instance import TRANSITIONS, IllegalTransition, Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.domain.labels import RepositoryAllowList, label_name, labels_match

__all__ = [
    "TRANSITIONS",
    "IllegalTransition",
    "Instance",
    "InstanceState",
    "Job",
    "JobState",
    "RepositoryAllowList",
    "label_name",
    "labels_match",
]
