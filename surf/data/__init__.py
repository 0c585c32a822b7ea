"""Task distribution: sample sources, label partitions and the keyed task sampler."""

from surf.data.partition import PARTITIONS
from surf.data.sources import SOURCES, load_source
from surf.data.tasks import Task, TaskSampler

__all__ = ["PARTITIONS", "SOURCES", "Task", "TaskSampler", "load_source"]
