"""demo_charlie: one of the twelve packages of fi_run's uv example."""

NAME = "charlie"


def hello() -> str:
    return f"hello from {NAME}"
