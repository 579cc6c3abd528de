"""What this host lacks for what the configuration asks, in words an admin can act on.

The daemons start and serve D-Bus whatever is missing; these problems are said in the log (when
they appear), in ``stafctl status`` / ``stacctl status`` (``host problems``) and on the systemd
STATUS line (``systemctl status``):

* ``/dev/nvme-fabrics`` missing: the nvme-fabrics module is not loaded, nothing can connect. The
  text names the modules to load: nvme-fabrics and one per transport in use (``nvme-tcp`` ...).
* a transport in use whose module the kernel does not have: not loaded (``/sys/module``), not
  built in and not installed (``/lib/modules/<release>/modules.builtin`` / ``modules.dep``).
  When ``/lib/modules/<release>`` cannot be read this is unknown and nothing is said: the
  kernel loads a transport module by itself at the first connect.
* a DH-HMAC-CHAP secret configured (sys.conf ``key``, ``dhchap-secret``, ``dhchap-ctrl-secret``)
  on a kernel built without NVMe authentication. The option list of ``/dev/nvme-fabrics`` does
  not tell: the kernel parses ``dhchap_secret`` whether or not it can authenticate (Debian's 6.1
  kernel lists it and was built without it), and such a connect then fails. What tells, in this
  order: the kernel's build configuration (``/boot/config-<release>``, ``/proc/config.gz``):
  ``CONFIG_NVME_HOST_AUTH`` (6.3 and later; 6.0 to 6.2 have only ``CONFIG_NVME_AUTH``); else
  ``/proc/kallsyms``, which lists ``nvme_auth_negotiate`` only when nvme-core was built with it
  (told only while nvme-core is loaded). With neither, support is "unknown" and said so.
* ``host-iface`` configured on a kernel whose ``/dev/nvme-fabrics`` does not take ``host_iface``
  (before 5.14): connections are then not bound to their interface.
* stafd with ``zeroconf=enabled`` and no ``org.freedesktop.Avahi`` on the system bus (neither
  running nor activatable): nothing is found by mDNS (see ``avahi_problem``; the bus is asked by
  the supervisor).

Only file reads here, against a root that tests replace (``HostPaths``).
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..lazy_pattern import LazyPattern
from ..record import record

AVAHI_NAME = 'org.freedesktop.Avahi'
_AUTH_SYMBOL = LazyPattern(rb'\snvme_auth_negotiate(?:\s|$)', re.M)
_NVME_CORE_SYMBOL = LazyPattern(rb'\snvme_init_ctrl(?:\s|$)', re.M)


@record
class HostProblem:
    """``short`` fits the systemd STATUS line; ``text`` says what, why and what to do."""

    short: str
    text: str


@record
class HostPaths:
    root: str = '/'
    release: str = ''  # the running kernel's (uname -r) when ''

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def shown(self, path: str) -> str:
        """``path`` as it is on the host (without a test's root)."""
        return '/' + os.path.relpath(path, self.root)

    def kernel_release(self) -> str:
        return self.release or os.uname().release


def transports_in_use(daemon: str, config) -> Tuple[str, ...]:
    """tcp (zeroconf finds tcp DCs; stacd connects what stafd finds, mostly tcp) and every
    transport of a configured controller, in that order."""
    found = ['tcp']
    for ctrl in getattr(config, 'controllers', ()):
        transport = getattr(ctrl, 'transport', '')
        if transport and transport not in found:
            found.append(transport)
    return tuple(found)


def auth_users(config, host) -> List[str]:
    """What in the configuration needs NVMe authentication (empty: nothing)."""
    users = []
    if host is not None and getattr(host, 'hostkey', None):
        users.append('the host key (sys.conf key=)')
    options = getattr(config, 'options', None)
    for name in ('dhchap_secret', 'dhchap_ctrl_secret'):
        if options is not None and getattr(options, name, None):
            users.append(f'{name.replace("_", "-")} in [Global]')
    for ctrl in getattr(config, 'controllers', ()):
        opts = getattr(ctrl, 'options', None)
        for name in ('dhchap_secret', 'dhchap_ctrl_secret'):
            if opts is not None and getattr(opts, name, None):
                users.append(f'{name.replace("_", "-")} of {ctrl.where}')
    return users


def _read(path: str, limit: int = 1 << 24) -> Optional[bytes]:
    try:
        with open(path, 'rb') as f:
            return f.read(limit)
    except OSError:
        return None


def kernel_config(paths: HostPaths) -> Tuple[Optional[bytes], str]:
    """The running kernel's build configuration and where it was read, or (None, '')."""
    boot = paths.path('boot', f'config-{paths.kernel_release()}')
    data = _read(boot)
    if data is not None:
        return data, paths.shown(boot)
    packed = _read(paths.path('proc', 'config.gz'))
    if packed is not None:
        import gzip  # only where /boot has no config: most hosts never pay for it

        try:
            return gzip.decompress(packed), '/proc/config.gz'
        except (OSError, EOFError):
            pass
    return None, ''


def _config_value(config: bytes, name: str) -> Optional[str]:
    """'y', 'm', 'n' (``# CONFIG_X is not set``), or None when the file does not mention it."""
    m = re.search(rb'^(?:' + name.encode() + rb'=(\S+)|# ' + name.encode() + rb' is not set)$', config, re.M)
    if m is None:
        return None
    return (m.group(1) or b'n').decode('ascii', 'replace')


def auth_support(paths: HostPaths) -> Tuple[Optional[bool], str]:
    """Whether the kernel can do NVMe in-band authentication as a host, and what says so
    (see the module's docstring); (None, why) when nothing reliable tells."""
    config, where = kernel_config(paths)
    if config is not None:
        for name in ('CONFIG_NVME_HOST_AUTH', 'CONFIG_NVME_AUTH'):
            value = _config_value(config, name)
            if value is not None:
                return value in ('y', 'm'), f'{name}={value} in {where}'
        if _config_value(config, 'CONFIG_NVME_CORE') is not None:
            return False, f'{where} has no CONFIG_NVME_AUTH (a kernel before 6.0)'
    symbols = _read(paths.path('proc', 'kallsyms'), 1 << 27)
    if symbols:
        if _AUTH_SYMBOL.search(symbols):
            return True, 'nvme_auth_negotiate in /proc/kallsyms'
        if _NVME_CORE_SYMBOL.search(symbols):
            return False, 'nvme-core is loaded without nvme_auth_negotiate (/proc/kallsyms)'
    release = paths.kernel_release()
    return None, (f'no /boot/config-{release} or /proc/config.gz, and /proc/kallsyms does not show nvme-core')


def transport_module(transport: str, paths: HostPaths) -> Optional[bool]:
    """Whether the kernel has the module of ``transport`` (loaded, built in or installed);
    None when that cannot be told."""
    name = f'nvme_{transport}'
    if os.path.isdir(paths.path('sys', 'module', name)):
        return True
    moddir = paths.path('lib', 'modules', paths.kernel_release())
    lists = [_read(os.path.join(moddir, f)) for f in ('modules.builtin', 'modules.dep')]
    if all(data is None for data in lists):
        return None
    pattern = re.compile(rb'(?:^|/)nvme-' + transport.encode() + rb'\.ko', re.M)
    return any(data is not None and pattern.search(data) for data in lists)


def fabrics_options(paths: HostPaths) -> Optional[Tuple[str, ...]]:
    """The option names /dev/nvme-fabrics lists, None when it cannot be read."""
    try:
        fd = os.open(paths.path('dev', 'nvme-fabrics'), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:  # before 5.17 the device lists nothing (EINVAL)
        return None
    finally:
        os.close(fd)
    line = data.decode('ascii', 'replace').splitlines()[0] if data.strip() else ''
    return tuple(t.split('=', 1)[0].strip() for t in line.split(',') if t.strip())


# nvme-stas 2.x's "kernel support" keys: the /dev/nvme-fabrics option each one stands for, and
# the Linux release that brought it
_SUPPORT = {'TP8013': ('discovery', (5, 16)), 'host_iface': ('host_iface', (5, 14))}


def kernel_support(paths: HostPaths) -> Dict[str, bool]:
    """Whether the kernel takes the ``discovery`` option (TP8013) and ``host_iface``: told by
    the option list of /dev/nvme-fabrics, else (before 5.17 it lists nothing; no module) by the
    kernel's release."""
    options = fabrics_options(paths)
    found = re.match(r'(\d+)\.(\d+)', paths.kernel_release())
    release = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    return {
        key: (option in options) if options else release >= since for key, (option, since) in _SUPPORT.items()
    }


def kernel_problems(
    daemon: str, config, host, paths: HostPaths, auth_known: Optional[Tuple[Optional[bool], str]] = None
) -> List[HostProblem]:
    """What the kernel lacks for ``config`` (see the module's docstring). ``auth_known``: the
    answer of an earlier ``auth_support`` (the kernel's build does not change while it runs)."""
    problems: List[HostProblem] = []
    transports = transports_in_use(daemon, config)
    device = paths.path('dev', 'nvme-fabrics')
    if not os.path.exists(device):
        modules = ['nvme-fabrics'] + [f'nvme-{t}' for t in transports]
        load = ' '.join(f'`modprobe {m}`' for m in modules)
        problems.append(
            HostProblem(
                f'no /dev/nvme-fabrics (modprobe {" ".join(modules)})',
                f'/dev/nvme-fabrics does not exist: the nvme-fabrics kernel module is not loaded, '
                f'so {daemon} cannot connect anything; load the modules with {load}',
            )
        )
    for transport in transports:
        if transport_module(transport, paths) is False:
            problems.append(
                HostProblem(
                    f'no nvme-{transport} module',
                    f'transport {transport} is in use but this kernel has no nvme-{transport} module '
                    f'(not loaded, not built in, not in /lib/modules/{paths.kernel_release()}): '
                    f'its connections will fail',
                )
            )
    users = auth_users(config, host)
    if users:
        supported, why = auth_known if auth_known is not None else auth_support(paths)
        if supported is False:
            problems.append(
                HostProblem(
                    'kernel without NVMe authentication',
                    f'{", ".join(users)} configured, but this kernel was built without NVMe '
                    f'authentication ({why}): connections that need DH-HMAC-CHAP will fail',
                )
            )
        elif supported is None:
            problems.append(
                HostProblem(
                    'NVMe authentication support unknown',
                    f'{", ".join(users)} configured; whether this kernel supports NVMe '
                    f'authentication is unknown ({why})',
                )
            )
    options = fabrics_options(paths)
    pinned = [c for c in getattr(config, 'controllers', ()) if getattr(c, 'host_iface', '')]
    if options and 'host_iface' not in options and pinned:
        problems.append(
            HostProblem(
                'kernel without host_iface',
                f'host-iface is configured ({pinned[0].where}) but this kernel does not take host_iface '
                f'(Linux 5.14 or later): those connections are not bound to their interface',
            )
        )
    return problems


def avahi_problem(zeroconf: bool, presence: str) -> Optional[HostProblem]:
    """``presence`` of org.freedesktop.Avahi on the system bus: 'running', 'activatable',
    'missing' or '' (not asked, or the bus did not answer)."""
    if not zeroconf or presence != 'missing':
        return None
    return HostProblem(
        'avahi-daemon missing',
        f'zeroconf is enabled but avahi-daemon is not on the system bus ({AVAHI_NAME} is neither '
        f'running nor activatable): no discovery controller is found by mDNS; install and start '
        f'avahi-daemon, or set zeroconf=disabled in [Service Discovery]',
    )


def status_suffix(problems: Sequence[HostProblem]) -> str:
    """What the systemd STATUS line adds: '' or ``; no /dev/nvme-fabrics (...)``."""
    return ''.join(f'; {p.short}' for p in problems)
