"""demo_echo: one of the twelve packages of fi_run's uv example."""

NAME = "echo"


def hello() -> str:
    return f"hello from {NAME}"
