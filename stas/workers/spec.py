"""What a worker process is told when it is started: plain data, encoded once at spawn (as the IPC
messages are: ``stas.ipc.codec.encode_record``).

Everything else (host identity, options, controllers) arrives later over IPC in ``Configure``,
so a configuration reload never needs a new process.
"""

from __future__ import annotations

from ..model import WorkerKey
from ..proctitle import worker_comm, worker_title
from ..record import record


@record
class WorkerSpec:
    key: WorkerKey
    daemon: str  # 'stafd', 'stacd' or 'idle' (a worker with no mechanism, for tests and benches)
    # the daemon it works for, as its process names show it ('stafd', 'stacd'); '' is ``daemon``
    service: str = ''
    heartbeat_s: float = 1.0
    # the beat interval of a worker with nothing to do (see runtime.py); 0: heartbeat_s always
    idle_heartbeat_s: float = 0.0
    # nothing in or out for this long (and no kernel operation in flight) is idle; 0: heartbeat_s
    quiet_s: float = 0.0
    log_level: str = 'INFO'
    log_target: str = 'stderr'  # 'stderr' or 'journal'
    runtime_dir: str = ''
    # where the firmware's NBFT* tables are (stacd never disconnects the boot connections)
    nbft_dir: str = '/sys/firmware/acpi/tables'
    # nvme-cli's controller ownership registry (stas.workers.ownership)
    registry_dir: str = '/run/nvme/registry'
    # Fault injection for the supervisor's own tests (see stas.workers.faults); '' in production.
    fault: str = ''

    @property
    def title(self) -> str:
        """What ``ps -o args`` shows for this worker, e.g. ``stafd: worker eth0/tcp``."""
        return worker_title(self.service or self.daemon, self.key.transport, self.key.host_iface)

    @property
    def comm(self) -> str:
        """Its 15-byte name, e.g. ``stafd:eth0/tcp`` (see ``stas.proctitle``)."""
        return worker_comm(self.service or self.daemon, self.key.transport, self.key.host_iface)
