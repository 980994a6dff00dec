"""`rollout autopilot`: the staged rollout carried out unattended (docs/PLAYBOOKS.md, "The autopilot")."""
