"""`python -m rollout_cli.simulator --port N --api-key K`: serve in the foreground."""

from rollout_cli.simulator.server import main

raise SystemExit(main())
