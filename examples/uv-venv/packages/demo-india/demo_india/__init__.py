"""demo_india: one of the twelve packages of fi_run's uv example."""

NAME = "india"


def hello() -> str:
    return f"hello from {NAME}"
