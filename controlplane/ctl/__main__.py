"""`python -m controlplane.ctl`: aibridgectl."""

from controlplane.ctl.cli import main

main()
