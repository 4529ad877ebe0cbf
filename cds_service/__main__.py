"""`python -m cds_service` runs the `cds-service` command."""

import sys

from cds_service.cli import main

sys.exit(main())
