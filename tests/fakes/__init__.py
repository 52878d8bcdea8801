"""Local stand-ins for remote services that speak their real protocols (the real SDKs are pointed at them)."""
