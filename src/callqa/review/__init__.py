"""Human review: scored calls and reviewers' verdicts in a database (store.py), the review web
app mounted by `callqa serve` under /review (web.py)."""
