"""`python -m hf_point_peft_cli`: the `point-peft` command."""

import sys

from . import main

sys.exit(main())
