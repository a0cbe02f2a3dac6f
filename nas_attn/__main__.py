import sys

from nas_attn.cli import main

sys.exit(main())
