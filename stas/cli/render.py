"""What stafctl and stacctl print: pure functions from the daemons' answers to text.

Default output is nvme-stas 2.x's: ``pprint.pformat(obj, width=120)`` (keys sorted, one key
per line once a line gets too long), which scripts such as ``mk-discovery-conf.py`` parse.
``--json`` prints the same data as ``json.dumps(obj, indent=2)``, in the daemon's key order:
that format is stable. ``workers`` prints a table for people (``--json`` for programs).
"""

from __future__ import annotations

import json
import pprint
from typing import Any, Dict, List, Mapping, Optional, Sequence

WORKER_COLUMNS = ('INTERFACE', 'TRANSPORT', 'PID', 'STATE', 'RESTARTS', 'UPTIME', 'LAST-EXIT')


def pretty(obj: Any) -> str:
    """nvme-stas 2.x output."""
    return pprint.pformat(obj, width=120)


def as_json(obj: Any) -> str:
    return json.dumps(obj, indent=2)


def metrics_json(text: str) -> str:
    """The samples of a Prometheus text (``metrics --json``): one object per metric family with
    its name, type, help and samples (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families  # only for --json

    return as_json(
        [
            {
                'name': family.name,
                'type': family.type,
                'help': family.documentation,
                'samples': [{'name': s.name, 'labels': s.labels, 'value': s.value} for s in family.samples],
            }
            for family in text_string_to_metric_families(text)
        ]
    )


def output(obj: Any, json_mode: bool) -> str:
    return as_json(obj) if json_mode else pretty(obj)


def tron_line(value: bool, json_mode: bool = False) -> str:
    """What ``tron``/``troff`` print once the daemon's value is read back: ``tron = True``
    (``{"tron": true}`` in JSON)."""
    return as_json({'tron': bool(value)}) if json_mode else f'tron = {bool(value)}'


def status_view(
    process_info: Mapping[str, Any],
    controllers: Sequence[Mapping[str, Any]],
    *,
    log_pages: Optional[Sequence[Sequence[Mapping[str, str]]]] = None,
    controller_infos: Optional[Sequence[Mapping[str, Any]]] = None,
    workers: Optional[Sequence[Mapping[str, Any]]] = None,
    config_problems: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """The ``status`` object, built as nvme-stas 2.x builds it, plus the workers.

    process_info's keys, then ``controllers``: each detailed controller with its ``log_pages``
    (stafctl) and its controller_info keys merged over it, in that order. ``workers`` (the
    ``workers --json`` rows) and ``config problems`` replace whatever process_info said under
    those keys when given (None: the daemon does not have them, keep process_info's).
    """
    view = dict(process_info)
    merged: List[Dict[str, Any]] = []
    for index, controller in enumerate(controllers):
        entry = dict(controller)
        if log_pages is not None:
            entry['log_pages'] = list(log_pages[index])
        if controller_infos is not None:
            entry.update(controller_infos[index])
        merged.append(entry)
    view['controllers'] = merged
    if workers is not None:
        view['workers'] = [dict(w) for w in workers]
    if config_problems is not None:
        view['config problems'] = list(config_problems)
    return view


def format_uptime(seconds: float) -> str:
    """A short duration for people: ``42s``, ``12m05s``, ``3h04m``, ``2d03h``; '-' for none."""
    if not seconds or seconds <= 0:
        return '-'
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f'{days}d{hours:02d}h'
    if hours:
        return f'{hours}h{minutes:02d}m'
    if minutes:
        return f'{minutes}m{secs:02d}s'
    return f'{secs}s'


def _cell(value: Any) -> str:
    text = '' if value is None else str(value)
    return text if text else '-'


def worker_cells(row: Mapping[str, Any]) -> List[str]:
    pid = row.get('pid') or 0
    return [
        _cell(row.get('interface')),
        _cell(row.get('transport')),
        str(pid) if pid else '-',
        _cell(row.get('state')),
        str(int(row.get('restarts') or 0)),
        format_uptime(float(row.get('uptime_s') or 0.0)),
        _cell(row.get('last_exit')),
    ]


def workers_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The ``workers`` table: one line per worker under a header, columns padded to fit.

    Empty values show as '-' (an interface-less fc/loop worker, no pid while stopped).
    """
    table = [list(WORKER_COLUMNS)] + [worker_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(WORKER_COLUMNS) - 1)]
    lines = []
    for line in table:
        padded = [cell.ljust(width) for cell, width in zip(line, widths)] + [line[-1]]
        lines.append('  '.join(padded).rstrip())
    if not rows:
        lines.append('(no workers)')
    return '\n'.join(lines)


def restarted_lines(keys: Sequence[str], json_mode: bool = False) -> str:
    """What ``restart`` prints: one ``restarted IFACE/TRANSPORT`` line per worker
    (``{"restarted": ["IFACE/TRANSPORT", ...]}`` in JSON)."""
    if json_mode:
        return as_json({'restarted': list(keys)})
    return '\n'.join(f'restarted {key}' for key in keys)
