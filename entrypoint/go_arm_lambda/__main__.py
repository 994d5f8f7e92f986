import sys

from go_arm_lambda.cli import main

sys.exit(main())
