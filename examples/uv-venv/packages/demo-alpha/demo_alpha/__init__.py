"""demo_alpha: one of the twelve packages of fi_run's uv example."""

NAME = "alpha"


def hello() -> str:
    return f"hello from {NAME}"
