"""`python -m gateway.cli`, as the `gateway` script."""

from .main import main

raise SystemExit(main())
