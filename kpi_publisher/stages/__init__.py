"""Pure transform stages: Mapping in, new dict out; no I/O, no clock (now comes in as a value)."""
