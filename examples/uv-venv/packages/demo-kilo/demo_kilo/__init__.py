"""demo_kilo: one of the twelve packages of fi_run's uv example."""

NAME = "kilo"


def hello() -> str:
    return f"hello from {NAME}"
