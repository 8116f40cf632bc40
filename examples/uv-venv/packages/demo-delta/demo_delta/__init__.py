"""demo_delta: one of the twelve packages of fi_run's uv example."""

NAME = "delta"


def hello() -> str:
    return f"hello from {NAME}"
