"""End-to-end tests: the real kernel NVMe-oF stack in a qemu guest (run them with tools/e2e)."""
