"""demo_bravo: one of the twelve packages of fi_run's uv example."""

NAME = "bravo"


def hello() -> str:
    return f"hello from {NAME}"
