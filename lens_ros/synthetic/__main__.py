"""``python -m lens_ros.synthetic``: see :mod:`lens_ros.synthetic.cli`."""
import sys

from lens_ros.synthetic.cli import main

sys.exit(main())
