"""The workspace (rollout.yaml), the stage the app is at, the audit trail and the Result type.

May import io only.
"""
