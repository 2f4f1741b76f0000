"""The long-running publisher, one module per job:

- `plan`: the pass as pure planning (the reader's report and the clocks -> publish or not,
  what to log, when to look again), and the age floors;
- `loop`: the thin loop and `Daemon` (events -> pass -> publish -> post-publish observers);
- `outdir`: the out dir, a missing state dir, second writers of an output;
- `survival`: crash log and backoff, the liveness thread, publish-failure streaks;
- `reload`: SIGHUP's config diffing and logging reconfiguration;
- `metrics`: kpis.prom and the /metrics endpoint;
- `signals`: the signal thread.

The composition root is `kpi_publisher.run` (`build_daemon`): it builds the watcher and wires
its rescan to the reader.
"""

from kpi_publisher.daemon.loop import (
    GC_GEN0_THRESHOLD,
    BatchSource,
    Daemon,
    Observer,
    PassResult,
    Publisher,
)
from kpi_publisher.daemon.outdir import FOREIGN_LOG_EVERY_S, output_paths
from kpi_publisher.daemon.plan import retry_delay_s
from kpi_publisher.daemon.reload import input_paths
from kpi_publisher.daemon.signals import install_signal_thread
from kpi_publisher.daemon.survival import (
    CrashLog,
    crash_backoff_s,
    default_crash_file,
    runtime_dir,
    stuck_limit_s,
)
from kpi_publisher.fs import inside

__all__ = [
    "FOREIGN_LOG_EVERY_S",
    "GC_GEN0_THRESHOLD",
    "BatchSource",
    "CrashLog",
    "Daemon",
    "Observer",
    "PassResult",
    "Publisher",
    "crash_backoff_s",
    "default_crash_file",
    "input_paths",
    "inside",
    "install_signal_thread",
    "output_paths",
    "retry_delay_s",
    "runtime_dir",
    "stuck_limit_s",
]
