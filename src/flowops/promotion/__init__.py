"""Promotion as reconciliation: what main asks for (`desired`: replayed merge by merge, each
merged experiment bound to its run by facts, `binding`), the pure decision (`decide`) on what
the runs show (`evidence`), moving the registry there (`promote`), and status, history and
rollback (`history`).

May import: `spec`, `gitops`, `registry`, the shared modules and MLflow (inside functions).
"""
