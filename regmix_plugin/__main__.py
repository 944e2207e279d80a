"""``python -m regmix_plugin`` is the ``regmix`` command."""

import sys

from regmix_plugin.cli import main

sys.exit(main())
