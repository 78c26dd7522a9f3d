"""``python -m fer_pipeline.demo OUT``: the ``fer-demo-data`` command."""

from .dataset import main

raise SystemExit(main())
