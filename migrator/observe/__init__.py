"""The only reading of live systems (through the adapters) into one immutable snapshot."""
