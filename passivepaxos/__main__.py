import sys

from passivepaxos.cli import main

sys.exit(main())
