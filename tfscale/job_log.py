"""A job's log as a person reads it: rank 0's lines are `2026-12-02 02:15:05 epoch 1/28 …`, other ranks print
only warnings and errors, each saying which rank it is.

absl's default line adds the level letter, microseconds, thread id and source line to every line; under
horovodrun every line also carried `[1,0]<stderr>:` (Horovod patch 04 makes that `--tag-output`)."""
import logging as std_logging

from absl import logging


class PersonsLog(std_logging.Formatter):
  """The time and the message; warnings and errors say so, and ranks other than 0 say which rank they are."""

  def __init__(self, rank: int):
    super().__init__("%(asctime)s %(who)s%(message)s", "%Y-%m-%d %H:%M:%S")
    self.rank = rank

  def format(self, record):
    record.who = ""
    if record.levelno >= std_logging.WARNING:
      record.who = f"{f'rank {self.rank} ' if self.rank else ''}{record.levelname}: "
    return super().format(record)


def _not_checkpoint_chatter(record) -> bool:
  """TF's checkpoint code logs an INFO line per save through absl; the epoch log is what people read."""
  return record.levelno > std_logging.INFO or "tensorflow/python/checkpoint" not in record.pathname


def use(rank: int):
  """This process's absl log in PersonsLog lines; INFO only from rank 0 (the one that reports)."""
  logging.get_absl_logger().addFilter(_not_checkpoint_chatter)
  logging.get_absl_handler().setFormatter(PersonsLog(rank))
  if rank:
    logging.set_verbosity(logging.WARNING)
