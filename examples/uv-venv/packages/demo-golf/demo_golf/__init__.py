"""demo_golf: one of the twelve packages of fi_run's uv example."""

NAME = "golf"


def hello() -> str:
    return f"hello from {NAME}"
