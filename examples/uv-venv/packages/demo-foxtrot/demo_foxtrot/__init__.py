"""demo_foxtrot: one of the twelve packages of fi_run's uv example."""

NAME = "foxtrot"


def hello() -> str:
    return f"hello from {NAME}"
