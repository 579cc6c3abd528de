"""nvme-stas: NVMe over Fabrics STorage Appliance Services (stafd, stacd and their tools)."""

__version__ = '3.1.0'
