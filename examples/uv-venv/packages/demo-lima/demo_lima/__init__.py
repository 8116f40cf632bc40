"""demo_lima: one of the twelve packages of fi_run's uv example."""

NAME = "lima"


def hello() -> str:
    return f"hello from {NAME}"
