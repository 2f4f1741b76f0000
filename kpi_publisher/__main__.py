import sys

from kpi_publisher.cli import main

sys.exit(main())
