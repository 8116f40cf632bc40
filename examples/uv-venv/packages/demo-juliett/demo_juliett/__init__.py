"""demo_juliett: one of the twelve packages of fi_run's uv example."""

NAME = "juliett"


def hello() -> str:
    return f"hello from {NAME}"
