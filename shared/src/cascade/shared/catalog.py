"""The platform's services and their default HTTP ports (architecture.md)."""

SERVICE_PORTS: dict[str, int] = {
    "accounts": 8001,
    "cases": 8002,
    "notifications": 8003,
    "legal": 8004,
}
