"""demo_hotel: one of the twelve packages of fi_run's uv example."""

NAME = "hotel"


def hello() -> str:
    return f"hello from {NAME}"
